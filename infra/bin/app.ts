#!/usr/bin/env node
// Standalone app: `npx cdk deploy` (see ../README.md and ../docs/deploy.md).
//   CALSETA_LAMBDA_DIR=$CARGO_TARGET_DIR/lambda   prebuilt `cargo lambda build --release --arm64`
//   CALSETA_CDK_PLACEHOLDER=1                     synth without binaries (CI)
//   neither                                       cargo-lambda-cdk builds the functions at synth
import * as cdk from 'aws-cdk-lib';
import { Calseta } from '../lib/calseta';

const app = new cdk.App();
const stack = new cdk.Stack(app, 'Calseta', {
  stackName: app.node.tryGetContext('calseta:stackName') ?? 'calseta',
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  description: 'Calseta - deterministic alert enrichment and agent dispatch (CDK app, same architecture as template.yaml)',
});
const raw = app.node.tryGetContext('calseta');
const config = typeof raw === 'string' ? JSON.parse(raw) : (raw ?? {});
const lambdaDir = process.env.CALSETA_LAMBDA_DIR || undefined;
new Calseta(stack, 'Calseta', {
  config,
  lambdaDir,
  placeholderCode: !lambdaDir && process.env.CALSETA_CDK_PLACEHOLDER === '1',
});
