#!/usr/bin/env node
// Validates Kubernetes manifests (multi-document YAML, as `helm template` prints them) against
// the Kubernetes API's OpenAPI schemas, with the `kubernetes-models` package (and
// `@kubernetes-models/prometheus-operator` for the Prometheus Operator's kinds):
//   helm template ... | node test/chart/validate-manifests.mjs
// Prints one line per object and exits 1 if any object is invalid or of a kind it has no
// model for. A standalone script, so it checks any rendered output, not only the specs'.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

const source = readFileSync(process.argv[2] ?? 0, 'utf8');
let failures = 0;

for (const document of parseAllDocuments(source)) {
  if (document.errors.length > 0) {
    console.error(
      `invalid YAML: ${document.errors.map((e) => e.message).join('; ')}`,
    );
    failures += 1;
    continue;
  }
  const object = document.toJS();
  if (object === null) {
    continue; // an empty document, such as a template that rendered nothing
  }
  const { apiVersion, kind } = object;
  const name = `${apiVersion}/${kind} ${object.metadata?.name ?? '(no name)'}`;
  const models = apiVersion.startsWith('monitoring.coreos.com/')
    ? '@kubernetes-models/prometheus-operator'
    : 'kubernetes-models';
  let Model;
  try {
    ({ [kind]: Model } = await import(`${models}/${apiVersion}/${kind}`));
  } catch {
    Model = undefined;
  }
  if (typeof Model !== 'function') {
    console.error(`FAIL ${name}: kubernetes-models has no model for this kind`);
    failures += 1;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok   ${name}`);
  } catch (error) {
    console.error(`FAIL ${name}: ${error.message}`);
    failures += 1;
  }
}

process.exit(failures > 0 ? 1 : 0);
