// Builds dist/: our source files as they are plus uPlot's and Swagger UI's browser builds, vendored so the
// plant network never needs the internet. Run by `make dashboard` (part of `make run`).
import { cpSync, mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const uplot = join(here, 'node_modules', 'uplot');

rmSync(dist, { recursive: true, force: true });
cpSync(join(here, 'src'), dist, { recursive: true });
mkdirSync(join(dist, 'vendor'), { recursive: true });
for (const file of ['dist/uPlot.iife.min.js', 'dist/uPlot.min.css', 'LICENSE']) {
  cpSync(join(uplot, file), join(dist, 'vendor', file.replace('dist/', '').replace('LICENSE', 'uPlot.LICENSE')));
}
// Swagger UI for the API reference at /docs.
const swagger = join(here, 'node_modules', 'swagger-ui-dist');
for (const file of ['swagger-ui-bundle.js', 'swagger-ui.css']) {
  cpSync(join(swagger, file), join(dist, 'vendor', file));
}
cpSync(join(swagger, 'LICENSE'), join(dist, 'vendor', 'swagger-ui.LICENSE'));
const version = (dir) => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
writeFileSync(join(dist, 'vendor', 'VERSIONS'), `uplot ${version(uplot)}\nswagger-ui-dist ${version(swagger)}\n`);
console.log(`dashboard built in ${dist} (uPlot ${version(uplot)}, Swagger UI ${version(swagger)})`);
