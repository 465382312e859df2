//! Deployment-time steps run by CloudFormation: the migrations custom resource, the app
//! database role and the connection budget it checks.

pub mod app_role;
pub mod migrations_resource;
