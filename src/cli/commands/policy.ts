// `shoal policy apply|ls|inspect|rm|test`: declarative deployment policies, kept as YAML documents by the cluster.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { Policy } from '../../core/index.js';
import { clientOf } from '../context.js';
import { parseFormat, printJson, printTable } from '../output.js';
import { eachArgument, inspectEach, listOptions, printList, type ListFlags } from './access.js';

/** The text of a document file (`what`: policy, template), with an error that names it when it cannot be read. */
export const readDocumentFile = (file: string, what = 'policy'): string => {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${what} file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
};

/** What a policy matches besides operations, e.g. `services=latte images=registry.example/*`; `*` for everything. */
export const matchText = (m: Policy['document']['match']): string => {
  const parts = [
    ...(m.projects ? [`projects=${m.projects.join(',')}`] : []),
    ...(m.services ? [`services=${m.services.join(',')}`] : []),
    ...(m.images ? [`images=${m.images.join(',')}`] : []),
    ...Object.entries(m.labels ?? {}).map(([k, v]) => `label:${k}=${v}`),
  ];
  return parts.join(' ') || '*';
};

export const registerPolicyCommands = (program: Command): void => {
  const policy = program.command('policy').description('manage deployment policies (deny, warn or audit service writes)');

  policy
    .command('apply')
    .description('create or update the policies of a YAML file (one or more documents); an invalid one changes nothing')
    .requiredOption('-f, --file <file>', 'the policy file')
    .action(async (flags: { file: string }, cmd: Command) => {
      const results = await clientOf(cmd).applyPolicies(readDocumentFile(flags.file));
      for (const r of results) process.stdout.write(`policy/${r.name} ${r.result}\n`);
    });

  listOptions(policy.command('ls').description('list policies'), 'names').action(async (flags: ListFlags, cmd: Command) => {
    const rows = await clientOf(cmd).listPolicies();
    printList(rows, flags, (p) => p.id, ['NAME', 'ACTION', 'OPERATIONS', 'MATCH', 'VERSION'], (p) => [p.id, p.document.action, p.document.match.operations?.join(',') ?? '*', matchText(p.document.match), String(p.meta.version)]);
  });

  inspectEach(policy.command('inspect').alias('show').description('show policies in full, as JSON').argument('<name...>'), (client, n) => client.inspectPolicy(n));
  eachArgument(policy.command('rm').description('remove policies').argument('<name...>'), async (client, n) => (await client.removePolicy(n)).name);

  policy
    .command('test')
    .description('dry run: evaluate the policies of a file against every existing service, enforcing and storing nothing')
    .requiredOption('-f, --file <file>', 'the policy file')
    .option('--format <format>', 'table or json')
    .action(async (flags: { file: string; format?: string }, cmd: Command) => {
      const format = parseFormat(flags.format);
      const rows = await clientOf(cmd).testPolicies(readDocumentFile(flags.file));
      if (format === 'json') return printJson(rows);
      printTable(
        ['POLICY', 'SERVICE', 'PROJECT', 'OUTCOME', 'MESSAGE'],
        rows.map((r) => [r.policy, r.service, r.project, r.outcome, r.messages.join('; ') || '-']),
      );
    });
};
