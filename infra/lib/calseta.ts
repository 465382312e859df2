// The Calseta architecture as one CDK construct: the same resources, logical ids, settings,
// alarms and outputs as ../template.yaml (scripts/cdk-parity.py compares them), so the two
// deployment paths cannot drift apart silently. Use it standalone (bin/app.ts) or inside your
// own app: `new Calseta(stack, 'Calseta', { config, lambdaDir })`.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as cdk from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { CalsetaConfig, connectionBudget, defaultConfig, validateConfig } from './config';

export interface CalsetaProps {
  readonly config?: Partial<CalsetaConfig>;
  /**
   * Prebuilt Lambda binaries: `<dir>/<function>/bootstrap`, as `cargo lambda build --release
   * --arm64` leaves them in `$CARGO_TARGET_DIR/lambda`. Without it the functions are built with
   * cargo-lambda-cdk's RustFunction at synth time (needs cargo and cargo-lambda).
   */
  readonly lambdaDir?: string;
  /** Synth without binaries (CI, diffing): each function gets a placeholder asset. */
  readonly placeholderCode?: boolean;
  /** The Cargo workspace (for RustFunction); default: the repository root. */
  readonly workspaceDir?: string;
}

const FUNCTIONS = ['migrate', 'sweep', 'ingest', 'enrich', 'dispatch', 'api'] as const;
type FnName = (typeof FUNCTIONS)[number];
const cap = (s: string) => s[0].toUpperCase() + s.slice(1);

export class Calseta extends Construct {
  readonly config: CalsetaConfig;
  readonly functions = {} as Record<FnName, lambda.Function>;
  readonly enrichQueue: sqs.CfnQueue;
  readonly dispatchQueue: sqs.CfnQueue;

  constructor(scope: Construct, id: string, props: CalsetaProps = {}) {
    super(scope, id);
    const c: CalsetaConfig = { ...defaultConfig, ...(props.config ?? {}) };
    this.config = c;
    const errors = validateConfig(c);
    if (errors.length) throw new Error(`Calseta config: ${errors.join('; ')}`);
    const stack = cdk.Stack.of(this);
    const name = stack.stackName;
    // Same logical ids as template.yaml: the parity check and operators' runbooks use them.
    const fixId = <T extends cdk.CfnElement>(r: T, logical: string): T => {
      r.overrideLogicalId(logical);
      return r;
    };
    const tags = (extra: Record<string, string> = {}) =>
      Object.entries({ app: 'calseta', stage: c.stage, ...extra }).map(([key, value]) => ({ key, value }));

    // ---------------------------------------------------------------- network
    let vpcId: string;
    let privateSubnets: string[];
    let publicSubnets: string[] = c.publicSubnetIds ?? [];
    let routeTables: string[] = c.privateRouteTableIds ?? [];
    let natRoute: cdk.CfnResource | undefined;
    if (c.createVpc) {
      const vpc = new ec2.Vpc(this, 'Vpc', {
        ipAddresses: ec2.IpAddresses.cidr(c.vpcCidr),
        maxAzs: 2,
        natGateways: 1,
        subnetConfiguration: [
          { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 20 },
          { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
        ],
        flowLogs: { rejects: { trafficType: ec2.FlowLogTrafficType.REJECT } },
      });
      vpcId = vpc.vpcId;
      privateSubnets = vpc.privateSubnets.map((s) => s.subnetId);
      publicSubnets = vpc.publicSubnets.map((s) => s.subnetId);
      routeTables = vpc.privateSubnets.map((s) => s.routeTable.routeTableId);
      natRoute = vpc.privateSubnets[0].node.findChild('DefaultRoute') as cdk.CfnResource;
    } else {
      vpcId = c.vpcId!;
      privateSubnets = c.privateSubnetIds!;
    }
    const noEgress = [{ description: 'No outbound traffic', ipProtocol: 'icmp', fromPort: 252, toPort: 86, cidrIp: '127.0.0.1/32' }];
    const lambdaSg = fixId(new ec2.CfnSecurityGroup(this, 'LambdaSecurityGroup', {
      groupDescription: 'Calseta functions and MCP tasks (no inbound; outbound to the DB and HTTPS)',
      vpcId,
      securityGroupEgress: [{ description: 'HTTPS to AWS APIs, provider APIs and agents (VPC endpoints / NAT)', ipProtocol: 'tcp', fromPort: 443, toPort: 443, cidrIp: '0.0.0.0/0' }],
      tags: [{ key: 'Name', value: `${name}-lambda` }],
    }), 'LambdaSecurityGroup');
    if (c.agentPortFrom !== 443 || c.agentPortTo !== 443) {
      fixId(new ec2.CfnSecurityGroupEgress(this, 'LambdaToAgentPortsEgress', {
        groupId: lambdaSg.ref, description: 'Agent webhooks on the allowed ports', ipProtocol: 'tcp',
        fromPort: c.agentPortFrom, toPort: c.agentPortTo, cidrIp: '0.0.0.0/0',
      }), 'LambdaToAgentPortsEgress');
    }
    const dbSg = fixId(new ec2.CfnSecurityGroup(this, 'DatabaseSecurityGroup', {
      groupDescription: 'Calseta PostgreSQL (5432 from the Lambda security group only)',
      vpcId,
      securityGroupIngress: [{ description: 'PostgreSQL from Calseta functions', ipProtocol: 'tcp', fromPort: 5432, toPort: 5432, sourceSecurityGroupId: lambdaSg.ref }],
      securityGroupEgress: noEgress,
      tags: [{ key: 'Name', value: `${name}-database` }],
    }), 'DatabaseSecurityGroup');
    const toDb = fixId(new ec2.CfnSecurityGroupEgress(this, 'LambdaToDatabaseEgress', {
      groupId: lambdaSg.ref, description: 'PostgreSQL to the Calseta database', ipProtocol: 'tcp',
      fromPort: 5432, toPort: 5432, destinationSecurityGroupId: dbSg.ref,
    }), 'LambdaToDatabaseEgress');
    let smEndpoint: ec2.CfnVPCEndpoint | undefined;
    if (c.createVpcEndpoints) {
      const epSg = fixId(new ec2.CfnSecurityGroup(this, 'VpcEndpointSecurityGroup', {
        groupDescription: 'Calseta interface VPC endpoints (HTTPS from the Lambda security group)',
        vpcId,
        securityGroupIngress: [{ description: 'HTTPS from Calseta functions', ipProtocol: 'tcp', fromPort: 443, toPort: 443, sourceSecurityGroupId: lambdaSg.ref }],
        securityGroupEgress: noEgress,
      }), 'VpcEndpointSecurityGroup');
      const sameAccount = {
        Version: '2012-10-17',
        Statement: [{ Sid: 'SameAccountPrincipalsOnly', Effect: 'Allow', Principal: '*', Action: '*', Resource: '*', Condition: { StringEquals: { 'aws:PrincipalAccount': stack.account } } }],
      };
      for (const [logical, svc] of [['SecretsManagerEndpoint', 'secretsmanager'], ['SqsEndpoint', 'sqs']]) {
        const ep = fixId(new ec2.CfnVPCEndpoint(this, logical, {
          vpcId, serviceName: `com.amazonaws.${stack.region}.${svc}`, vpcEndpointType: 'Interface',
          privateDnsEnabled: true, subnetIds: privateSubnets, securityGroupIds: [epSg.ref], policyDocument: sameAccount,
        }), logical);
        if (svc === 'secretsmanager') smEndpoint = ep;
      }
    }
    let s3Endpoint: ec2.CfnVPCEndpoint | undefined;
    if (routeTables.length) {
      s3Endpoint = fixId(new ec2.CfnVPCEndpoint(this, 'S3GatewayEndpoint', {
        vpcId, serviceName: `com.amazonaws.${stack.region}.s3`, vpcEndpointType: 'Gateway', routeTableIds: routeTables,
      }), 'S3GatewayEndpoint');
    }

    // ---------------------------------------------------------------- data
    const subnetGroup = fixId(new rds.CfnDBSubnetGroup(this, 'DatabaseSubnetGroup', {
      dbSubnetGroupDescription: 'Calseta database private subnets', subnetIds: privateSubnets,
    }), 'DatabaseSubnetGroup');
    const paramGroup = fixId(new rds.CfnDBParameterGroup(this, 'DatabaseParameterGroup', {
      description: 'Calseta PostgreSQL 15 parameters', family: 'postgres15',
      parameters: {
        'rds.force_ssl': c.databaseSslMode === 'disable' ? '0' : '1',
        max_connections: String(c.dbMaxConnections),
        log_min_duration_statement: '1000',
      },
    }), 'DatabaseParameterGroup');
    let monitoringRole: iam.Role | undefined;
    if (c.dbMonitoringInterval > 0) {
      monitoringRole = new iam.Role(this, 'DatabaseMonitoringRole', {
        assumedBy: new iam.ServicePrincipal('monitoring.rds.amazonaws.com'),
        managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AmazonRDSEnhancedMonitoringRole')],
      });
    }
    const db = fixId(new rds.CfnDBInstance(this, 'Database', {
      engine: 'postgres', engineVersion: c.dbEngineVersion, autoMinorVersionUpgrade: true,
      dbInstanceClass: c.dbInstanceClass, allocatedStorage: String(c.dbAllocatedStorage),
      maxAllocatedStorage: c.dbMaxAllocatedStorage, storageType: 'gp3', storageEncrypted: true,
      publiclyAccessible: false, multiAz: c.dbMultiAz, dbName: 'calseta', masterUsername: 'calseta_admin',
      manageMasterUserPassword: true, dbSubnetGroupName: subnetGroup.ref, dbParameterGroupName: paramGroup.ref,
      vpcSecurityGroups: [dbSg.ref], backupRetentionPeriod: 7, copyTagsToSnapshot: true,
      deletionProtection: c.dbDeletionProtection, enableCloudwatchLogsExports: ['postgresql', 'upgrade'],
      enablePerformanceInsights: c.dbPerformanceInsights,
      performanceInsightsRetentionPeriod: c.dbPerformanceInsights ? 7 : undefined,
      monitoringInterval: c.dbMonitoringInterval, monitoringRoleArn: monitoringRole?.roleArn,
      tags: tags(),
    }), 'Database');
    db.cfnOptions.deletionPolicy = cdk.CfnDeletionPolicy.SNAPSHOT;
    db.cfnOptions.updateReplacePolicy = cdk.CfnDeletionPolicy.SNAPSHOT;
    const masterSecretArn = db.attrMasterUserSecretSecretArn;

    const retainSecret = (logical: string, description: string, gen: secretsmanager.CfnSecret.GenerateSecretStringProperty, retain = true) => {
      const s = fixId(new secretsmanager.CfnSecret(this, logical, { description, generateSecretString: gen, tags: tags() }), logical);
      if (retain) {
        s.cfnOptions.deletionPolicy = cdk.CfnDeletionPolicy.RETAIN;
        s.cfnOptions.updateReplacePolicy = cdk.CfnDeletionPolicy.RETAIN;
      }
      return s;
    };
    const appUser = retainSecret('DatabaseAppUserSecret', `Calseta (${name}) database login of the functions (role created by migrate)`,
      { secretStringTemplate: '{"username":"calseta_app"}', generateStringKey: 'password', passwordLength: 40, excludePunctuation: true, includeSpace: false }, false);
    const seed = retainSecret('EncryptionKeySeed', `Calseta (${name}) seed for the app secret's encryption_key; not read at run time`,
      { secretStringTemplate: '{}', generateStringKey: 'encryption_key', passwordLength: 64, excludePunctuation: true, excludeUppercase: true, includeSpace: false, excludeCharacters: 'ghijklmnopqrstuvwxyz' });
    const appSecret = retainSecret('AppSecret', `Calseta (${name}) application secrets: API key hashing key, encryption key, provider API keys`,
      { secretStringTemplate: cdk.Fn.sub('{"encryption_key":"{{resolve:secretsmanager:${Seed}:SecretString:encryption_key}}"}', { Seed: seed.ref }), generateStringKey: 'key_hash_secret', passwordLength: 64, excludePunctuation: true, includeSpace: false });
    const bootstrapSecret = retainSecret('BootstrapAdminKeySecret', `Calseta (${name}) bootstrap admin API key: cai_ followed by key_random`,
      { secretStringTemplate: '{"name":"bootstrap-admin"}', generateStringKey: 'key_random', passwordLength: 43, excludePunctuation: true, includeSpace: false });

    let proxyEndpoint: string | undefined;
    let proxyTargetGroup: rds.CfnDBProxyTargetGroup | undefined;
    if (c.useRdsProxy) {
      const proxySg = fixId(new ec2.CfnSecurityGroup(this, 'ProxySecurityGroup', {
        groupDescription: 'Calseta RDS Proxy (5432 from the functions, 5432 to the database)', vpcId,
        securityGroupIngress: [{ description: 'PostgreSQL from Calseta functions', ipProtocol: 'tcp', fromPort: 5432, toPort: 5432, sourceSecurityGroupId: lambdaSg.ref }],
      }), 'ProxySecurityGroup');
      new ec2.CfnSecurityGroupEgress(this, 'ProxyToDatabaseEgress', { groupId: proxySg.ref, description: 'PostgreSQL to the Calseta database', ipProtocol: 'tcp', fromPort: 5432, toPort: 5432, destinationSecurityGroupId: dbSg.ref });
      new ec2.CfnSecurityGroupIngress(this, 'DatabaseIngressFromProxy', { groupId: dbSg.ref, description: 'PostgreSQL from the RDS Proxy', ipProtocol: 'tcp', fromPort: 5432, toPort: 5432, sourceSecurityGroupId: proxySg.ref });
      new ec2.CfnSecurityGroupEgress(this, 'LambdaToProxyEgress', { groupId: lambdaSg.ref, description: 'PostgreSQL to the RDS Proxy', ipProtocol: 'tcp', fromPort: 5432, toPort: 5432, destinationSecurityGroupId: proxySg.ref });
      const proxyRole = new iam.Role(this, 'DatabaseProxyRole', { assumedBy: new iam.ServicePrincipal('rds.amazonaws.com') });
      proxyRole.addToPolicy(new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [appUser.ref] }));
      const proxy = fixId(new rds.CfnDBProxy(this, 'DatabaseProxy', {
        dbProxyName: `${name}-proxy`, engineFamily: 'POSTGRESQL', requireTls: true, idleClientTimeout: 1800,
        roleArn: proxyRole.roleArn, vpcSubnetIds: privateSubnets, vpcSecurityGroupIds: [proxySg.ref],
        auth: [{ authScheme: 'SECRETS', secretArn: appUser.ref, iamAuth: 'DISABLED', clientPasswordAuthType: 'POSTGRES_SCRAM_SHA_256' }],
      }), 'DatabaseProxy');
      proxyTargetGroup = new rds.CfnDBProxyTargetGroup(this, 'DatabaseProxyTargetGroup', {
        dbProxyName: proxy.ref, targetGroupName: 'default', dbInstanceIdentifiers: [db.ref],
        connectionPoolConfigurationInfo: { maxConnectionsPercent: 80, maxIdleConnectionsPercent: 40, connectionBorrowTimeout: 30 },
      });
      proxyEndpoint = proxy.attrEndpoint;
    }

    // ---------------------------------------------------------------- queues
    const queue = (logical: string, props: sqs.CfnQueueProps) => {
      const q = fixId(new sqs.CfnQueue(this, logical, { sqsManagedSseEnabled: true, ...props }), logical);
      q.cfnOptions.deletionPolicy = cdk.CfnDeletionPolicy.DELETE;
      q.cfnOptions.updateReplacePolicy = cdk.CfnDeletionPolicy.DELETE;
      return q;
    };
    const enrichDlq = queue('EnrichDeadLetterQueue', { messageRetentionPeriod: 1209600 });
    this.enrichQueue = queue('EnrichQueue', { visibilityTimeout: 360, messageRetentionPeriod: 345600, redrivePolicy: { deadLetterTargetArn: enrichDlq.attrArn, maxReceiveCount: 10 } });
    const dispatchDlq = queue('DispatchDeadLetterQueue', { messageRetentionPeriod: 1209600 });
    this.dispatchQueue = queue('DispatchQueue', { visibilityTimeout: 1980, messageRetentionPeriod: 345600, redrivePolicy: { deadLetterTargetArn: dispatchDlq.attrArn, maxReceiveCount: 5 } });
    const queues = [this.enrichQueue, enrichDlq, this.dispatchQueue, dispatchDlq];
    fixId(new sqs.CfnQueuePolicy(this, 'QueuesTlsOnlyPolicy', {
      queues: queues.map((q) => q.ref),
      policyDocument: { Version: '2012-10-17', Statement: [{ Sid: 'DenyInsecureTransport', Effect: 'Deny', Principal: '*', Action: 'sqs:*', Resource: queues.map((q) => q.attrArn), Condition: { Bool: { 'aws:SecureTransport': 'false' } } }] },
    }), 'QueuesTlsOnlyPolicy');

    // ---------------------------------------------------------------- functions
    const dbHost = proxyEndpoint ?? db.attrEndpointAddress;
    const env: Record<string, string> = {
      DATABASE_SECRET_ARN: appUser.ref,
      DATABASE_HOST: dbHost,
      DATABASE_PORT: db.attrEndpointPort,
      DATABASE_PREPARED_STATEMENTS: c.useRdsProxy ? 'false' : 'true',
      DATABASE_NAME: 'calseta',
      DATABASE_SSLMODE: c.databaseSslMode,
      DATABASE_CA_FILE: c.databaseCaFile,
      DATABASE_POOL_SIZE: '2',
      DATABASE_CONNECT_TIMEOUT_MS: '5000',
      DATABASE_STATEMENT_TIMEOUT_MS: '10000',
      ENRICH_QUEUE_URL: this.enrichQueue.ref,
      DISPATCH_QUEUE_URL: this.dispatchQueue.ref,
      CALSETA_SECRETS_ARN: appSecret.ref,
      INTERNAL_CIDRS: c.internalCidrs,
      INTERNAL_DOMAIN_SUFFIXES: c.internalDomainSuffixes,
      CALSETA_ENRICHMENT_DEADLINE_SECONDS: String(c.enrichmentDeadlineSeconds),
      CALSETA_OUTBOUND_ALLOW_HOSTS: c.outboundAllowHosts,
      RUST_LOG: c.logLevel,
      AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH: 'true',
      // API Gateway appends the caller's address to X-Forwarded-For (failed-auth limit per address).
      CALSETA_TRUST_FORWARDED_FOR: 'true',
    };
    const providerEnv = {
      CALSETA_PROVIDER_SECRETS_ARN: appSecret.ref,
      CALSETA_BUDGET_VIRUSTOTAL: c.virusTotalBudget,
      CALSETA_BUDGET_ABUSEIPDB: c.abuseIpDbBudget,
      CALSETA_BUDGET_GREYNOISE: c.greyNoiseBudget,
    };
    const placeholder = props.placeholderCode ? placeholderDir() : undefined;
    const workspace = props.workspaceDir ?? path.resolve(__dirname, '..', '..');
    const fnSpec: Record<FnName, { description: string; timeout: number; reserved?: number; env?: Record<string, string> }> = {
      migrate: { description: 'Calseta - applies SQL migrations (CloudFormation custom resource)', timeout: 300,
        env: { CALSETA_BOOTSTRAP_KEY_SECRET_ARN: bootstrapSecret.ref, DATABASE_SECRET_ARN: masterSecretArn, DATABASE_HOST: db.attrEndpointAddress, DATABASE_PREPARED_STATEMENTS: 'true', CALSETA_APP_DB_SECRET_ARN: appUser.ref } },
      sweep: { description: 'Calseta - re-sends unsent outbox rows and closes overdue enrichments', timeout: 60, reserved: 1 },
      ingest: { description: 'Calseta - authenticates, normalizes and stores SIEM alerts (202), starts enrichment', timeout: 29, reserved: c.ingestReservedConcurrency, env: { DATABASE_POOL_SIZE: String(c.ingestPoolSize) } },
      enrich: { description: 'Calseta - enriches indicators (one message per alert x indicator) and completes alerts', timeout: 60, env: { ...providerEnv, DATABASE_POOL_SIZE: String(c.enrichPoolSize) } },
      dispatch: { description: 'Calseta - builds the agent payload and delivers signed webhooks (retries as delayed messages)', timeout: 330, env: { CALSETA_DELIVERY_RETRY_SCHEDULE: c.deliveryRetrySchedule, DATABASE_POOL_SIZE: String(c.dispatchPoolSize) } },
      api: { description: 'Calseta - REST API (alerts, findings, agents, deliveries, payloads, on-demand enrichment, health)', timeout: 29, reserved: c.apiReservedConcurrency, env: { ...providerEnv, DATABASE_POOL_SIZE: String(c.apiPoolSize), ENRICH_DLQ_URL: enrichDlq.ref, DISPATCH_DLQ_URL: dispatchDlq.ref } },
    };
    const vpcConfig = { securityGroupIds: [lambdaSg.ref], subnetIds: privateSubnets };
    for (const fn of FUNCTIONS) {
      const spec = fnSpec[fn];
      const logGroup = fixId(new logs.CfnLogGroup(this, `${cap(fn)}LogGroup`, { logGroupName: `/aws/lambda/${name}-${fn}`, retentionInDays: 30 }), `${cap(fn)}LogGroup`);
      logGroup.cfnOptions.deletionPolicy = cdk.CfnDeletionPolicy.DELETE;
      const common: lambda.FunctionOptions = {
        description: spec.description,
        timeout: cdk.Duration.seconds(spec.timeout),
        memorySize: 256,
        architecture: lambda.Architecture.ARM_64,
        tracing: lambda.Tracing.ACTIVE,
        reservedConcurrentExecutions: spec.reserved,
        environment: { ...env, ...(spec.env ?? {}) },
        loggingFormat: lambda.LoggingFormat.TEXT,
        logGroup: logs.LogGroup.fromLogGroupName(this, `${cap(fn)}LogGroupRef`, logGroup.ref),
      };
      let f: lambda.Function;
      if (placeholder || props.lambdaDir) {
        f = new lambda.Function(this, `${cap(fn)}Function`, {
          ...common,
          runtime: lambda.Runtime.PROVIDED_AL2023,
          handler: 'bootstrap',
          code: lambda.Code.fromAsset(placeholder ?? path.join(props.lambdaDir!, fn)),
        });
      } else {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { RustFunction } = require('cargo-lambda-cdk');
        f = new RustFunction(this, `${cap(fn)}Function`, { ...common, manifestPath: path.join(workspace, 'Cargo.toml'), binaryName: fn });
      }
      const cfn = f.node.defaultChild as lambda.CfnFunction;
      cfn.overrideLogicalId(`${cap(fn)}Function`);
      // VPC by ids (an imported VPC would need a lookup, i.e. AWS credentials at synth).
      cfn.vpcConfig = vpcConfig;
      f.addToRolePolicy(new iam.PolicyStatement({ actions: ['ec2:CreateNetworkInterface', 'ec2:DescribeNetworkInterfaces', 'ec2:DeleteNetworkInterface', 'ec2:AssignPrivateIpAddresses', 'ec2:UnassignPrivateIpAddresses'], resources: ['*'] }));
      if (fn !== 'migrate') f.addToRolePolicy(new iam.PolicyStatement({ sid: 'ReadCalsetaSecrets', actions: ['secretsmanager:GetSecretValue'], resources: [appUser.ref, appSecret.ref] }));
      this.functions[fn] = f;
    }
    const fns = this.functions;
    fns.migrate.addToRolePolicy(new iam.PolicyStatement({ sid: 'ReadCalsetaSecrets', actions: ['secretsmanager:GetSecretValue'], resources: [masterSecretArn, appUser.ref, appSecret.ref, bootstrapSecret.ref] }));
    const send = (f: lambda.Function, qs: sqs.CfnQueue[], extra: string[] = []) =>
      f.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage', ...extra], resources: qs.map((q) => q.attrArn) }));
    send(fns.sweep, [this.enrichQueue, this.dispatchQueue], ['sqs:GetQueueAttributes']);
    send(fns.ingest, [this.enrichQueue, this.dispatchQueue]);
    send(fns.enrich, [this.dispatchQueue]);
    fns.enrich.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:ChangeMessageVisibility'], resources: [this.enrichQueue.attrArn] }));
    send(fns.dispatch, [this.dispatchQueue], ['sqs:ChangeMessageVisibility']);
    send(fns.api, [this.enrichQueue, this.dispatchQueue], ['sqs:GetQueueAttributes']);
    // Depth only: /health and `calseta status` show parked messages.
    fns.api.addToRolePolicy(new iam.PolicyStatement({ sid: 'ReadDeadLetterDepth', actions: ['sqs:GetQueueAttributes'], resources: [enrichDlq.attrArn, dispatchDlq.attrArn] }));

    // Event sources: the same settings as template.yaml's SQS events.
    const esm = (f: lambda.Function, q: sqs.CfnQueue, max: number, logical: string) => {
      f.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:ChangeMessageVisibility'], resources: [q.attrArn] }));
      fixId(new lambda.CfnEventSourceMapping(this, logical, {
        functionName: f.functionName, eventSourceArn: q.attrArn, batchSize: 10, maximumBatchingWindowInSeconds: 0,
        functionResponseTypes: ['ReportBatchItemFailures'], scalingConfig: { maximumConcurrency: max },
      }), logical);
    };
    esm(fns.enrich, this.enrichQueue, c.enrichMaxConcurrency, 'EnrichFunctionEnrichWork');
    esm(fns.dispatch, this.dispatchQueue, c.dispatchMaxConcurrency, 'DispatchFunctionDispatchWork');
    for (const f of [fns.sweep]) {
      new lambda.CfnEventInvokeConfig(this, 'SweepEventInvokeConfig', { functionName: f.functionName, qualifier: '$LATEST', maximumRetryAttempts: 0, maximumEventAgeInSeconds: 60 });
    }
    const rule = new events.CfnRule(this, 'SweepFunctionEveryMinute', { scheduleExpression: 'rate(1 minute)', description: 'Calseta outbox sweep', state: 'ENABLED', targets: [{ id: 'sweep', arn: fns.sweep.functionArn }] });
    rule.overrideLogicalId('SweepFunctionEveryMinute');
    new lambda.CfnPermission(this, 'SweepFunctionEveryMinutePermission', { action: 'lambda:InvokeFunction', functionName: fns.sweep.functionName, principal: 'events.amazonaws.com', sourceArn: rule.attrArn });

    // Migrations custom resource: before anything serves traffic.
    const migrations = new cdk.CustomResource(this, 'DatabaseMigrations', {
      serviceToken: fns.migrate.functionArn,
      resourceType: 'Custom::Migrations',
      serviceTimeout: cdk.Duration.seconds(900),
      properties: {
        Version: c.version,
        MigrateFunctionVersion: fns.migrate.currentVersion.version,
        SecretsManagerEndpoint: smEndpoint?.ref ?? 'none',
        S3GatewayEndpoint: s3Endpoint?.ref ?? 'none',
        NatRoute: natRoute ? (natRoute as cdk.CfnResource).ref : 'none',
        ProxyTargetGroup: proxyTargetGroup?.ref ?? 'none',
        ConnectionReserve: '2',
        ConnectionBudget: c.useRdsProxy ? '' : connectionBudget(c).spec,
        AppUserSecret: appUser.ref,
      },
    });
    (migrations.node.defaultChild as cdk.CfnResource).overrideLogicalId('DatabaseMigrations');
    migrations.node.addDependency(db, toDb);
    for (const fn of FUNCTIONS) if (fn !== 'migrate') fns[fn].node.addDependency(migrations);

    // ---------------------------------------------------------------- REST API
    const accessLogs = fixId(new logs.CfnLogGroup(this, 'ApiAccessLogGroup', { logGroupName: `/aws/apigateway/${name}-access`, retentionInDays: 30 }), 'ApiAccessLogGroup');
    const api = new apigw.RestApi(this, 'HttpApi', {
      restApiName: `${name}-api`,
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      cloudWatchRole: false,
      deployOptions: {
        stageName: c.stage,
        tracingEnabled: true,
        throttlingRateLimit: c.apiThrottleRateLimit,
        throttlingBurstLimit: c.apiThrottleBurstLimit,
        loggingLevel: apigw.MethodLoggingLevel.OFF,
        dataTraceEnabled: false,
        metricsEnabled: true,
        accessLogDestination: new apigw.LogGroupLogDestination(logs.LogGroup.fromLogGroupArn(this, 'ApiAccessLogGroupRef', accessLogs.attrArn)),
        accessLogFormat: apigw.AccessLogFormat.custom('{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","time":"$context.requestTime","method":"$context.httpMethod","resource":"$context.resourcePath","status":"$context.status","bytes":"$context.responseLength","latencyMs":"$context.responseLatency","integrationLatencyMs":"$context.integrationLatency","integrationStatus":"$context.integrationStatus","wafStatus":"$context.wafResponseCode","xrayTraceId":"$context.xrayTraceId"}'),
      },
    });
    (api.node.defaultChild as cdk.CfnResource).overrideLogicalId('HttpApi');
    // Our own ApiUrl/IngestUrl outputs replace the construct's generated one.
    api.node.tryRemoveChild('Endpoint');
    const ingestI = new apigw.LambdaIntegration(fns.ingest);
    const apiI = new apigw.LambdaIntegration(fns.api);
    const v1 = api.root.addResource('v1');
    v1.addResource('ingest').addResource('{source}').addMethod('POST', ingestI);
    const alerts = v1.addResource('alerts');
    alerts.addMethod('POST', ingestI);
    alerts.addMethod('GET', apiI);
    v1.addResource('{proxy+}').addMethod('ANY', apiI);
    api.root.addResource('health').addMethod('GET', apiI);
    api.root.addResource('openapi.json').addMethod('GET', apiI);

    if (c.enableWaf || c.ingestAllowedCidrs.length) {
      const rules: wafv2.CfnWebACL.RuleProperty[] = [];
      if (c.ingestAllowedCidrs.length) {
        const ipSet = new wafv2.CfnIPSet(this, 'IngestAllowedIpSet', { scope: 'REGIONAL', ipAddressVersion: 'IPV4', addresses: c.ingestAllowedCidrs, description: 'SIEM addresses allowed to send to /v1/ingest/' });
        rules.push({
          name: 'ingest-from-allowed-sources-only', priority: 0, action: { block: {} },
          visibilityConfig: { sampledRequestsEnabled: true, cloudWatchMetricsEnabled: true, metricName: 'ingest-not-allowed' },
          statement: { andStatement: { statements: [
            { byteMatchStatement: { fieldToMatch: { uriPath: {} }, positionalConstraint: 'CONTAINS', searchString: '/v1/ingest/', textTransformations: [{ priority: 0, type: 'LOWERCASE' }] } },
            { notStatement: { statement: { ipSetReferenceStatement: { arn: ipSet.attrArn } } } },
          ] } },
        });
      }
      if (c.enableWaf) {
        rules.push({ name: 'rate-limit-per-ip', priority: 1, action: { block: {} }, visibilityConfig: { sampledRequestsEnabled: true, cloudWatchMetricsEnabled: true, metricName: 'rate-limited' }, statement: { rateBasedStatement: { limit: c.wafRateLimit, aggregateKeyType: 'IP' } } });
      }
      const acl = fixId(new wafv2.CfnWebACL(this, 'ApiWebAcl', { scope: 'REGIONAL', description: 'Calseta API - rate limit and SIEM allow-list for ingest', defaultAction: { allow: {} }, visibilityConfig: { sampledRequestsEnabled: true, cloudWatchMetricsEnabled: true, metricName: `${name}-api` }, rules }), 'ApiWebAcl');
      new wafv2.CfnWebACLAssociation(this, 'ApiWebAclAssociation', { resourceArn: api.deploymentStage.stageArn, webAclArn: acl.attrArn });
    }

    // ---------------------------------------------------------------- MCP (ECS Fargate + ALB)
    let mcpDns: string | undefined;
    if (c.mcpImageUri) {
      // L1 cluster: the L2 one wants a VPC object (a lookup or a new VPC); the service below
      // takes subnet ids.
      const cluster = new ecs.CfnCluster(this, 'McpCluster', { clusterSettings: [{ name: 'containerInsights', value: 'enabled' }] });
      const task = new ecs.FargateTaskDefinition(this, 'McpTaskDefinition', { cpu: 256, memoryLimitMiB: 512, runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.ARM64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX } });
      task.obtainExecutionRole().addManagedPolicy(iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AmazonECSTaskExecutionRolePolicy'));
      task.addToTaskRolePolicy(new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [appUser.ref, appSecret.ref] }));
      task.addToTaskRolePolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [this.enrichQueue.attrArn, this.dispatchQueue.attrArn] }));
      const albSg = new ec2.CfnSecurityGroup(this, 'McpAlbSecurityGroup', { groupDescription: 'Calseta MCP load balancer (443 from McpAllowedCidr)', vpcId, securityGroupIngress: [{ description: 'HTTPS from MCP clients', ipProtocol: 'tcp', fromPort: 443, toPort: 443, cidrIp: c.mcpAllowedCidr }] });
      const svcSg = new ec2.CfnSecurityGroup(this, 'McpServiceSecurityGroup', { groupDescription: 'Calseta MCP tasks (8001 from the load balancer)', vpcId, securityGroupIngress: [{ description: 'MCP from the load balancer', ipProtocol: 'tcp', fromPort: 8001, toPort: 8001, sourceSecurityGroupId: albSg.ref }], securityGroupEgress: noEgress });
      new ec2.CfnSecurityGroupEgress(this, 'McpAlbToTasksEgress', { groupId: albSg.ref, description: 'MCP tasks', ipProtocol: 'tcp', fromPort: 8001, toPort: 8001, destinationSecurityGroupId: svcSg.ref });
      const alb = new elbv2.CfnLoadBalancer(this, 'McpLoadBalancer', {
        type: 'application', scheme: c.mcpAlbScheme, securityGroups: [albSg.ref],
        subnets: c.mcpAlbScheme === 'internet-facing' ? publicSubnets : privateSubnets,
        loadBalancerAttributes: [{ key: 'routing.http.drop_invalid_header_fields.enabled', value: 'true' }, { key: 'idle_timeout.timeout_seconds', value: '300' }],
      });
      const logGroup = new logs.LogGroup(this, 'McpLogGroup', { logGroupName: `/ecs/${name}-mcp`, retention: logs.RetentionDays.ONE_MONTH, removalPolicy: cdk.RemovalPolicy.DESTROY });
      const container = task.addContainer('mcp', {
        image: ecs.ContainerImage.fromRegistry(c.mcpImageUri), essential: true, readonlyRootFilesystem: true,
        portMappings: [{ containerPort: 8001 }], logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: 'mcp' }),
        environment: { ...env, CALSETA_MCP_ADDR: '0.0.0.0:8001', CALSETA_MCP_ALLOWED_HOSTS: c.mcpDomainName || alb.attrDnsName, DATABASE_POOL_SIZE: String(c.mcpPoolSize) },
      });
      cdk.Annotations.of(container).acknowledgeWarning('@aws-cdk/aws-ecs:ecrImageRequiresPolicy', 'the execution role has AmazonECSTaskExecutionRolePolicy (ECR pull)');
      const tg = new elbv2.CfnTargetGroup(this, 'McpTargetGroup', { targetType: 'ip', protocol: 'HTTP', port: 8001, vpcId, healthCheckPath: '/health', healthCheckIntervalSeconds: 15, healthyThresholdCount: 2, unhealthyThresholdCount: 3, matcher: { httpCode: '200' }, targetGroupAttributes: [{ key: 'deregistration_delay.timeout_seconds', value: '30' }] });
      const listener = new elbv2.CfnListener(this, 'McpHttpsListener', { loadBalancerArn: alb.ref, port: 443, protocol: 'HTTPS', sslPolicy: 'ELBSecurityPolicy-TLS13-1-2-2021-06', certificates: [{ certificateArn: c.mcpCertificateArn }], defaultActions: [{ type: 'forward', targetGroupArn: tg.ref }] });
      const svc = new ecs.CfnService(this, 'McpService', {
        cluster: cluster.ref, launchType: 'FARGATE', desiredCount: c.mcpMinTasks, taskDefinition: task.taskDefinitionArn,
        healthCheckGracePeriodSeconds: 30,
        deploymentConfiguration: { minimumHealthyPercent: 100, maximumPercent: 200, deploymentCircuitBreaker: { enable: true, rollback: true } },
        networkConfiguration: { awsvpcConfiguration: { assignPublicIp: 'DISABLED', subnets: privateSubnets, securityGroups: [lambdaSg.ref, svcSg.ref] } },
        loadBalancers: [{ containerName: 'mcp', containerPort: 8001, targetGroupArn: tg.ref }],
      });
      svc.node.addDependency(listener);
      svc.node.addDependency(migrations);
      const target = new cdk.aws_applicationautoscaling.CfnScalableTarget(this, 'McpScalableTarget', { serviceNamespace: 'ecs', scalableDimension: 'ecs:service:DesiredCount', resourceId: cdk.Fn.sub('service/${C}/${S}', { C: cluster.ref, S: svc.attrName }), minCapacity: c.mcpMinTasks, maxCapacity: c.mcpMaxTasks });
      new cdk.aws_applicationautoscaling.CfnScalingPolicy(this, 'McpCpuScaling', { policyName: `${name}-mcp-cpu`, policyType: 'TargetTrackingScaling', scalingTargetId: target.ref, targetTrackingScalingPolicyConfiguration: { targetValue: 60, scaleInCooldown: 300, scaleOutCooldown: 60, predefinedMetricSpecification: { predefinedMetricType: 'ECSServiceAverageCPUUtilization' } } });
      mcpDns = alb.attrDnsName;
    }

    // ---------------------------------------------------------------- alarms
    const topic = fixId(new sns.CfnTopic(this, 'AlarmTopic', { displayName: 'Calseta alarms', tags: [{ key: 'app', value: 'calseta' }] }), 'AlarmTopic');
    if (c.alarmEmail) new sns.CfnSubscription(this, 'AlarmEmailSubscription', { topicArn: topic.ref, protocol: 'email', endpoint: c.alarmEmail });
    const alarm = (logical: string, description: string, namespace: string, metricName: string, dims: Record<string, string>, statistic: string, period: number, evals: number, threshold: number, op = 'GreaterThanThreshold') =>
      fixId(new cloudwatch.CfnAlarm(this, logical, {
        alarmDescription: description, namespace, metricName,
        dimensions: Object.entries(dims).map(([name, value]) => ({ name, value })),
        ...(statistic.startsWith('p') ? { extendedStatistic: statistic } : { statistic }),
        period, evaluationPeriods: evals, datapointsToAlarm: evals, threshold, comparisonOperator: op,
        treatMissingData: 'notBreaching', alarmActions: [topic.ref], okActions: [topic.ref],
      }), logical);
    alarm('EnrichDeadLetterAlarm', 'Messages in the Calseta enrich dead-letter queue (enrichment gave up after 10 receives).', 'AWS/SQS', 'ApproximateNumberOfMessagesVisible', { QueueName: enrichDlq.attrQueueName }, 'Maximum', 60, 1, 0);
    alarm('DispatchDeadLetterAlarm', 'Messages in the Calseta dispatch dead-letter queue (delivery gave up after 5 receives).', 'AWS/SQS', 'ApproximateNumberOfMessagesVisible', { QueueName: dispatchDlq.attrQueueName }, 'Maximum', 60, 1, 0);
    alarm('SweepErrorsAlarm', 'The Calseta outbox sweep has failed every minute for 5 minutes.', 'AWS/Lambda', 'Errors', { FunctionName: fns.sweep.functionName }, 'Sum', 60, 5, 0);
    for (const fn of ['ingest', 'api', 'enrich', 'dispatch', 'migrate'] as FnName[]) {
      alarm(`${cap(fn)}ErrorsAlarm`, `The Calseta ${fn} function failed (Lambda errors - crashes, timeouts) in 3 of 3 minutes.`, 'AWS/Lambda', 'Errors', { FunctionName: fns[fn].functionName }, 'Sum', 60, 3, 0);
    }
    for (const fn of ['ingest', 'api', 'enrich', 'dispatch'] as FnName[]) {
      alarm(`${cap(fn)}ThrottlesAlarm`, `The Calseta ${fn} function is throttled (reserved or maximum concurrency reached) for 5 minutes - raise it within the connection budget.`, 'AWS/Lambda', 'Throttles', { FunctionName: fns[fn].functionName }, 'Sum', 60, 5, 0);
    }
    const apiDims = { ApiName: `${name}-api`, Stage: c.stage };
    alarm('Api5xxAlarm', 'The Calseta REST API answered 5xx more than 5 times a minute for 3 minutes.', 'AWS/ApiGateway', '5XXError', apiDims, 'Sum', 60, 3, 5);
    alarm('ApiLatencyAlarm', 'Calseta REST API p99 latency above 5 s for 15 minutes.', 'AWS/ApiGateway', 'Latency', apiDims, 'p99', 300, 3, 5000);
    alarm('EnrichQueueAgeAlarm', 'The oldest enrich message is over 15 minutes old (enrichment is falling behind or blocked).', 'AWS/SQS', 'ApproximateAgeOfOldestMessage', { QueueName: this.enrichQueue.attrQueueName }, 'Maximum', 300, 2, 900);
    alarm('DispatchQueueAgeAlarm', 'The oldest dispatch message is over 1 hour old (agents unreachable or delivery blocked).', 'AWS/SQS', 'ApproximateAgeOfOldestMessage', { QueueName: this.dispatchQueue.attrQueueName }, 'Maximum', 300, 2, 3600);
    alarm('DatabaseCpuAlarm', 'Calseta database CPU above 80 % for 15 minutes.', 'AWS/RDS', 'CPUUtilization', { DBInstanceIdentifier: db.ref }, 'Average', 300, 3, 80);
    alarm('DatabaseStorageAlarm', 'Calseta database free storage below 2 GiB (storage autoscaling at its ceiling?).', 'AWS/RDS', 'FreeStorageSpace', { DBInstanceIdentifier: db.ref }, 'Minimum', 300, 1, 2147483648, 'LessThanThreshold');
    alarm('OutboxBacklogAlarm', 'Outbox rows waiting to be sent stayed above 100 for 10 minutes (queue sends failing). Metric Calseta/OutboxBacklog (service = the sweep function), emitted by the sweep as EMF.', 'Calseta', 'OutboxBacklog', { service: fns.sweep.functionName }, 'Maximum', 60, 10, 100);
    fixId(new cloudwatch.CfnAlarm(this, 'DatabaseConnectionsAlarm', {
      alarmDescription: 'Calseta database connections above 80 % of max_connections for 10 minutes.',
      evaluationPeriods: 2, datapointsToAlarm: 2, threshold: 80, comparisonOperator: 'GreaterThanThreshold', treatMissingData: 'notBreaching',
      alarmActions: [topic.ref], okActions: [topic.ref],
      metrics: [
        { id: 'share', label: 'connections % of max_connections', expression: `100 * connections / ${c.dbMaxConnections}`, returnData: true },
        { id: 'connections', returnData: false, metricStat: { stat: 'Maximum', period: 300, metric: { namespace: 'AWS/RDS', metricName: 'DatabaseConnections', dimensions: [{ name: 'DBInstanceIdentifier', value: db.ref }] } } },
      ],
    }), 'DatabaseConnectionsAlarm');

    // ---------------------------------------------------------------- outputs (template.yaml's names)
    const out = (id: string, value: string, description?: string) => new cdk.CfnOutput(this, id, { value, description }).overrideLogicalId(id);
    const apiUrl = `https://${api.restApiId}.execute-api.${stack.region}.amazonaws.com/${c.stage}`;
    out('EnrichQueueUrl', this.enrichQueue.ref);
    out('EnrichDeadLetterQueueUrl', enrichDlq.ref);
    out('DispatchQueueUrl', this.dispatchQueue.ref);
    out('DispatchDeadLetterQueueUrl', dispatchDlq.ref);
    out('DatabaseEndpoint', db.attrEndpointAddress, 'PostgreSQL host name (port in DatabasePort)');
    out('DatabasePort', db.attrEndpointPort);
    out('DatabaseSecretArn', masterSecretArn, 'RDS-managed master user secret (username/password JSON)');
    out('AppSecretArn', appSecret.ref, 'Application secret; add provider API keys here');
    out('IngestUrl', apiUrl, 'Base URL for SIEM webhooks (POST <url>/v1/ingest/{sentinel|elastic|splunk|generic})');
    for (const fn of FUNCTIONS) out(`${cap(fn)}FunctionName`, fns[fn].functionName);
    out('BootstrapAdminKeySecretArn', bootstrapSecret.ref, 'The first admin API key is "cai_" + the key_random field of this secret');
    out('ApiUrl', apiUrl, 'Base URL of the REST API (GET <url>/health, <url>/v1/...)');
    out('AlarmTopicArn', topic.ref);
    out('LambdaSecurityGroupId', lambdaSg.ref, 'Security group of the functions (attach future functions to it)');
    out('DatabaseAppUserSecretArn', appUser.ref, 'Login of the functions and MCP tasks (least-privilege role created by migrate)');
    if (proxyEndpoint) out('DatabaseProxyEndpoint', proxyEndpoint);
    out('VpcIdOutput', vpcId, 'VPC of the stack (created or given)');
    out('ApiAccessLogGroupName', accessLogs.ref);
    if (mcpDns) {
      out('McpUrl', c.mcpDomainName ? `https://${c.mcpDomainName}/mcp` : `https://${mcpDns}/mcp`, "MCP endpoint (point McpDomainName's DNS record at McpLoadBalancerDns)");
      out('McpLoadBalancerDns', mcpDns);
    }
  }
}

/** A directory with a stub `bootstrap`, for synth without binaries (never deploy it). */
function placeholderDir(): string {
  const dir = path.join(os.tmpdir(), 'calseta-cdk-placeholder');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'bootstrap'), '#!/bin/sh\necho "placeholder: synth-only asset, build the functions" >&2\nexit 1\n', { mode: 0o755 });
  return dir;
}
