export { Calseta, CalsetaProps } from './calseta';
export { CalsetaConfig, connectionBudget, defaultConfig, validateConfig } from './config';
