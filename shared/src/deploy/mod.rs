//! Deployment-time steps run by CloudFormation: the migrations custom resource.

pub mod migrations_resource;
