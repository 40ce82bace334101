// `shoal template apply|ls|inspect|rm|deploy`: service recipes admins make and provisioners deploy by name.

import type { Command } from 'commander';
import type { Service } from '../../core/index.js';
import type { PolicyApplyResult, TemplateView } from '../../protocol/index.js';
import { clientOf } from '../context.js';
import { eachArgument, inspectEach, listOptions, printList, type ListFlags } from './access.js';
import { readDocumentFile } from './policy.js';

const path = (name: string): string => `/templates/${encodeURIComponent(name)}`;

export const registerTemplateCommands = (program: Command): void => {
  const template = program.command('template').description('manage service templates; deploy a service from one');

  template
    .command('apply')
    .description('create or update the templates of a YAML file (one or more documents); an invalid one changes nothing')
    .requiredOption('-f, --file <file>', 'the template file')
    .action(async (flags: { file: string }, cmd: Command) => {
      const results = (await clientOf(cmd).raw('POST', '/templates', { source: readDocumentFile(flags.file, 'template') })) as PolicyApplyResult[];
      for (const r of results) process.stdout.write(`template/${r.name} ${r.result}\n`);
    });

  listOptions(template.command('ls').description('list templates'), 'names').action(async (flags: ListFlags, cmd: Command) => {
    const rows = (await clientOf(cmd).raw('GET', '/templates')) as TemplateView[];
    printList(rows, flags, (t) => t.name, ['NAME', 'PROJECT', 'IMAGE', 'REPLICAS', 'DESCRIPTION'], (t) => [
      t.name,
      t.project,
      t.image,
      `${t.replicas.min}..${t.replicas.max} (default ${t.replicas.default})`,
      t.description || '-',
    ]);
  });

  inspectEach(template.command('inspect').description('show templates in full, as JSON').argument('<name...>'), (client, n) => client.raw('GET', path(n)));

  eachArgument(template.command('rm').description('remove templates (services deployed from them stay)').argument('<name...>'), async (client, n) =>
    ((await client.raw('DELETE', path(n))) as { name: string }).name,
  );

  template
    .command('deploy')
    .description("deploy a service from a template, into the template's project")
    .argument('<template>')
    .requiredOption('--name <name>', 'the service name')
    .option('--replicas <n>', "replica count within the template's bounds (default: the template's)")
    .option('-q, --quiet', 'print only the service id')
    .action(async (name: string, flags: { name: string; replicas?: string; quiet?: boolean }, cmd: Command) => {
      const replicas = flags.replicas === undefined ? undefined : Number(flags.replicas);
      if (replicas !== undefined && !Number.isInteger(replicas)) throw new Error(`invalid --replicas '${flags.replicas ?? ''}': a whole number`);
      const s = (await clientOf(cmd).raw('POST', `${path(name)}/deploy`, { name: flags.name, ...(replicas === undefined ? {} : { replicas }) })) as Service;
      process.stdout.write(flags.quiet ? `${s.id}\n` : `service ${s.spec.name} (${s.id}) deployed from template ${name} into project ${s.spec.project ?? 'default'}\n`);
    });
};
