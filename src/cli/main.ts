#!/usr/bin/env node
// The `shoal` command: parses arguments, runs one command, prints for humans or as JSON, and sets the exit code.

import { Command, CommanderError } from 'commander';
import { ShoalError } from '../core/index.js';
import { VERSION } from '../manager/version.js';
import { ApiError } from './client.js';
import { registerAccessCommands } from './commands/access.js';
import { registerClusterCommands } from './commands/cluster.js';
import { registerEventsCommand } from './commands/events.js';
import { registerPolicyCommands } from './commands/policy.js';
import { registerClusterSettingsCommands, registerNodeCommands, registerServiceCommands } from './commands/service.js';
import { registerSimCommands } from './commands/sim.js';
import { registerTemplateCommands } from './commands/template.js';

const program = new Command('shoal')
  .description('Shoal: a container orchestrator — one command to a cluster that runs services of containers')
  .version(VERSION)
  .option('-H, --host <host:port>', 'manager to talk to (default: $SHOAL_HOST, else the context file)')
  .option('--token <token>', "credential to act with (default: $SHOAL_TOKEN, else the context file's): a token from 'shoal token create'")
  .enablePositionalOptions()
  .showHelpAfterError('(add --help for usage)')
  .exitOverride();

registerClusterCommands(program);
registerServiceCommands(program);
registerNodeCommands(program);
registerClusterSettingsCommands(program);
registerEventsCommand(program);
registerAccessCommands(program);
registerPolicyCommands(program);
registerTemplateCommands(program);
registerSimCommands(program);

/** Prints an error the way a user can act on it: what failed, and each field that was wrong. */
const report = (e: unknown): number => {
  if (e instanceof CommanderError) return e.exitCode;
  if (e instanceof ApiError || e instanceof ShoalError) {
    process.stderr.write(`Error: ${e.message}\n`);
    for (const v of e.violations) if (!e.message.includes(v.reason)) process.stderr.write(`  ${v.field}: ${v.reason}\n`);
    return 1;
  }
  process.stderr.write(`Error: ${e instanceof Error ? e.message : String(e)}\n`);
  if (process.env.SHOAL_DEBUG && e instanceof Error) process.stderr.write(`${e.stack ?? ''}\n`);
  return 1;
};

try {
  await program.parseAsync(process.argv);
} catch (e) {
  process.exitCode = report(e);
}
