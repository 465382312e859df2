// Every deployment setting of the CDK app, in one place. The defaults equal template.yaml's
// parameter defaults (scripts/cdk-parity.py checks the ones both share). Override them in
// cdk.json ("context": {"calseta": {...}}) or with `cdk deploy -c calseta='{"stage":"dev"}'`.

export interface CalsetaConfig {
  stage: string;
  /** Release marker: changing it re-runs the migrations. */
  version: string;
  logLevel: string;
  /** Create a VPC (2 AZs, 1 NAT gateway, S3 gateway endpoint); else give the ids below. */
  createVpc: boolean;
  vpcCidr: string;
  vpcId?: string;
  privateSubnetIds?: string[];
  publicSubnetIds?: string[];
  /** Route tables of existing private subnets: an S3 gateway endpoint is added to them. */
  privateRouteTableIds?: string[];
  /** Confirms existing private subnets reach S3 without privateRouteTableIds (NAT, endpoint). */
  existingSubnetsReachS3: boolean;
  createVpcEndpoints: boolean;
  agentPortFrom: number;
  agentPortTo: number;
  dbInstanceClass: string;
  dbAllocatedStorage: number;
  dbMaxAllocatedStorage: number;
  dbMaxConnections: number;
  dbEngineVersion: string;
  dbMultiAz: boolean;
  dbDeletionProtection: boolean;
  dbMonitoringInterval: number;
  dbPerformanceInsights: boolean;
  useRdsProxy: boolean;
  databaseSslMode: 'disable' | 'require' | 'verify-full';
  databaseCaFile: string;
  ingestReservedConcurrency: number;
  ingestPoolSize: number;
  apiReservedConcurrency: number;
  apiPoolSize: number;
  enrichMaxConcurrency: number;
  enrichPoolSize: number;
  dispatchMaxConcurrency: number;
  dispatchPoolSize: number;
  apiThrottleRateLimit: number;
  apiThrottleBurstLimit: number;
  ingestAllowedCidrs: string[];
  enableWaf: boolean;
  wafRateLimit: number;
  internalCidrs: string;
  internalDomainSuffixes: string;
  virusTotalBudget: string;
  abuseIpDbBudget: string;
  greyNoiseBudget: string;
  enrichmentDeadlineSeconds: number;
  outboundAllowHosts: string;
  /** Seconds before retry 1, 2, … of a failed agent delivery (CALSETA_DELIVERY_RETRY_SCHEDULE). */
  deliveryRetrySchedule: string;
  alarmEmail: string;
  /** MCP server image (functions/mcp/Dockerfile); empty = no MCP service. */
  mcpImageUri: string;
  mcpCertificateArn: string;
  mcpDomainName: string;
  mcpAlbScheme: 'internal' | 'internet-facing';
  mcpAllowedCidr: string;
  mcpMinTasks: number;
  mcpMaxTasks: number;
  mcpPoolSize: number;
}

export const defaultConfig: CalsetaConfig = {
  stage: 'prod',
  version: '1',
  logLevel: 'info',
  createVpc: false,
  vpcCidr: '10.40.0.0/16',
  existingSubnetsReachS3: false,
  createVpcEndpoints: true,
  agentPortFrom: 443,
  agentPortTo: 443,
  dbInstanceClass: 'db.t4g.micro',
  dbAllocatedStorage: 20,
  dbMaxAllocatedStorage: 200,
  dbMaxConnections: 120,
  dbEngineVersion: '15',
  dbMultiAz: true,
  dbDeletionProtection: true,
  dbMonitoringInterval: 60,
  dbPerformanceInsights: true,
  useRdsProxy: false,
  databaseSslMode: 'require',
  databaseCaFile: '',
  ingestReservedConcurrency: 10,
  ingestPoolSize: 2,
  apiReservedConcurrency: 5,
  apiPoolSize: 2,
  enrichMaxConcurrency: 10,
  enrichPoolSize: 4,
  dispatchMaxConcurrency: 5,
  dispatchPoolSize: 4,
  apiThrottleRateLimit: 200,
  apiThrottleBurstLimit: 500,
  ingestAllowedCidrs: [],
  enableWaf: false,
  wafRateLimit: 20000,
  internalCidrs: '',
  internalDomainSuffixes: '',
  virusTotalBudget: '4/min,500/day',
  abuseIpDbBudget: '1000/day',
  greyNoiseBudget: '50/day',
  enrichmentDeadlineSeconds: 60,
  outboundAllowHosts: '',
  deliveryRetrySchedule: '5,300,1800,7200,18000,36000,36000',
  alarmEmail: '',
  mcpImageUri: '',
  mcpCertificateArn: '',
  mcpDomainName: '',
  mcpAlbScheme: 'internal',
  mcpAllowedCidr: '10.0.0.0/8',
  mcpMinTasks: 1,
  mcpMaxTasks: 2,
  mcpPoolSize: 2,
};

/** Checks what template.yaml's Rules and the migrate function check, at synth time. */
export function validateConfig(c: CalsetaConfig): string[] {
  const errors: string[] = [];
  if (!c.createVpc) {
    if (!c.vpcId) errors.push('createVpc false needs vpcId');
    if (!c.privateSubnetIds || c.privateSubnetIds.length < 2) errors.push('createVpc false needs two or more privateSubnetIds');
    if (!(c.privateRouteTableIds && c.privateRouteTableIds.length) && !c.existingSubnetsReachS3) {
      errors.push('give privateRouteTableIds (an S3 gateway endpoint is added) or set existingSubnetsReachS3: migrate must reach S3');
    }
  }
  if (c.databaseSslMode === 'verify-full' && !c.databaseCaFile) errors.push('verify-full needs databaseCaFile');
  if (c.agentPortFrom > c.agentPortTo) errors.push('agentPortFrom must not exceed agentPortTo');
  if (c.mcpImageUri && !c.mcpCertificateArn) errors.push('the MCP service needs mcpCertificateArn');
  if (c.mcpImageUri && c.mcpAlbScheme === 'internet-facing' && !c.createVpc && !(c.publicSubnetIds && c.publicSubnetIds.length)) {
    errors.push('an internet-facing MCP load balancer in an existing VPC needs publicSubnetIds');
  }
  if (!c.useRdsProxy) {
    const budget = connectionBudget(c);
    const available = c.dbMaxConnections - 3 - 2;
    if (budget.total > available) {
      errors.push(`connection budget ${budget.total} (${budget.spec}) exceeds ${available} (dbMaxConnections - 5)`);
    }
  }
  return errors;
}

/** The migrate function's ConnectionBudget property (same format as template.yaml's). */
export function connectionBudget(c: CalsetaConfig): { spec: string; total: number } {
  const items: [string, number, number][] = [
    ['ingest', c.ingestReservedConcurrency, c.ingestPoolSize],
    ['api', c.apiReservedConcurrency, c.apiPoolSize],
    ['enrich', c.enrichMaxConcurrency, c.enrichPoolSize],
    ['dispatch', c.dispatchMaxConcurrency, c.dispatchPoolSize],
    ['sweep', 1, 2],
    ['migrate', 1, 2],
    ['mcp', c.mcpImageUri ? c.mcpMaxTasks : 0, c.mcpImageUri ? c.mcpPoolSize : 0],
  ];
  return {
    spec: items.map(([n, a, b]) => `${n}=${a}x${b}`).join(','),
    total: items.reduce((s, [, a, b]) => s + a * b, 0),
  };
}
