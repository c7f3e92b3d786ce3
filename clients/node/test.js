'use strict';
// The Node.js client against a live clipd serving the bundled demo model:
//   CLIPD_ADDR=127.0.0.1:50051 node --test test.js   (scripts/test-clients.sh starts a server and runs this)

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');
const crypto = require('node:crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { connect, ClipdError, LOADER_OPTIONS } = require('./client');
const { solidPng, squarePng, circlePng, RED, BLUE } = require('./tiny-png');

const ADDR = process.env.CLIPD_ADDR;
// The server's write key and read key, when it requires keys (scripts/test-clients.sh sets both).
const API_KEY = process.env.CLIPD_API_KEY;
const READ_KEY = process.env.CLIPD_READ_KEY;
const LABELS = ['red square', 'blue circle', 'green star'];
const skip = ADDR ? false : 'set CLIPD_ADDR to a running clipd (scripts/test-clients.sh does)';

let clip;
let info;
const collections = [];

before(async () => {
  if (!ADDR) return;
  clip = connect(ADDR, { apiKey: API_KEY });
  info = await clip.modelInfo();
});

after(async () => {
  if (!clip) return;
  for (const name of collections) await clip.dropCollection(name);
  clip.close();
});

async function newCollection() {
  const name = `node-${crypto.randomUUID().slice(0, 12)}`;
  const created = await clip.createCollection(name);
  collections.push(name);
  assert.deepEqual([created.name, created.dim, created.count], [name, info.dim, 0]);
  const again = await clip.createCollection(name, { m: 8, ifNotExists: true });
  assert.deepEqual([again.name, again.m], [name, created.m]);
  return name;
}

const norm = (v) => Math.sqrt(v.reduce((sum, x) => sum + x * x, 0));

test('model info', { skip }, () => {
  assert.equal(info.name, 'clipd-demo');
  assert.ok(info.dim > 0);
});

test('embed a text and an image', { skip }, async () => {
  const [text] = await clip.embedTexts(['a photo of a red square']);
  const [image] = await clip.embedImages([solidPng(RED)]);
  for (const v of [text, image]) {
    assert.equal(v.length, info.dim);
    assert.ok(Math.abs(norm(v) - 1) < 1e-4, `norm ${norm(v)}`);
  }
  assert.equal((await clip.embed(['a red square', solidPng(RED)])).length, 2);
});

test('classify against request labels', { skip }, async () => {
  const results = await clip.classify([squarePng(RED), circlePng(BLUE)], { labels: LABELS });
  assert.equal(results.length, 2);
  results.forEach((result, i) => {
    assert.deepEqual(result.scores.map((s) => s.label).sort(), [...LABELS].sort());
    const probabilities = result.scores.map((s) => s.probability);
    assert.ok(Math.abs(probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-4);
    assert.deepEqual(probabilities, [...probabilities].sort((a, b) => b - a));
    assert.equal(result.scores[0].label, ['red square', 'blue circle'][i]);
    assert.deepEqual(result.flagged, []);
  });
  const [top1] = await clip.classify([squarePng(RED)], { labels: LABELS, topK: 1 });
  assert.deepEqual(top1.scores.map((s) => s.label), ['red square']);
});

test('upsert and search by text, vector, id, image and filter', { skip }, async () => {
  const name = await newCollection();
  const [red] = await clip.embedImages([squarePng(RED)]);
  assert.deepEqual(
    await clip.upsert(name, [
      { id: 't-red', text: 'a red square', metadata: { kind: 'text' } },
      { id: 't-blue', text: 'a blue circle', metadata: { kind: 'text' } },
      { id: 't-green', text: 'a green star', metadata: { kind: 'text' } },
      { id: 'v-red', vector: red, metadata: { kind: 'vector' } },
    ]),
    { inserted: 4, replaced: 0 },
  );
  assert.deepEqual(await clip.upsert(name, [{ id: 't-green', text: 'a green star' }]), { inserted: 0, replaced: 1 });

  let hits = await clip.search(name, { text: 'a large red square' }, { topK: 2 });
  assert.equal(hits[0].id, 't-red');
  assert.deepEqual(hits[0].metadata, { kind: 'text' });
  assert.ok(hits[0].score >= hits[1].score);

  hits = await clip.search(name, { vector: red }, { topK: 1 });
  assert.equal(hits[0].id, 'v-red');
  assert.ok(Math.abs(hits[0].score - 1) < 1e-4);

  hits = await clip.search(name, { id: 't-red' }, { topK: 3 });
  assert.equal(hits.length, 3);
  assert.ok(!hits.some((h) => h.id === 't-red'));
  assert.equal(hits[0].id, 'v-red');

  hits = await clip.search(name, { image: circlePng(BLUE) }, { topK: 1 });
  assert.equal(hits[0].id, 't-blue');

  hits = await clip.search(name, { text: 'a red square' }, { filter: { kind: 'vector' } });
  assert.deepEqual(hits.map((h) => h.id), ['v-red']);
});

test('an unknown collection is NOT_FOUND', { skip }, async () => {
  await assert.rejects(clip.search(`missing-${crypto.randomUUID().slice(0, 8)}`, { text: 'a red square' }), (err) => {
    assert.ok(err instanceof ClipdError);
    assert.equal(err.code, grpc.status.NOT_FOUND);
    assert.equal(err.codeName, 'NOT_FOUND');
    return true;
  });
});

test('a vector of the wrong dimension is INVALID_ARGUMENT, and nothing is written', { skip }, async () => {
  const name = await newCollection();
  await assert.rejects(
    clip.upsert(name, [
      { id: 'ok', text: 'a red square' },
      { id: 'bad', vector: [1, 2, 3] },
    ]),
    (err) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /item 1/);
      return true;
    },
  );
  assert.deepEqual(await clip.search(name, { text: 'a red square' }), []);
});

test('API keys are required and scoped', { skip: skip || (!(API_KEY && READ_KEY) && 'the server requires no API keys') }, async () => {
  const anonymous = connect(ADDR);
  const reader = connect(ADDR, { apiKey: READ_KEY });
  try {
    await assert.rejects(anonymous.modelInfo(), (err) => err.code === grpc.status.UNAUTHENTICATED);
    assert.equal((await reader.modelInfo()).dim, info.dim);
    await assert.rejects(
      reader.createCollection(`node-${crypto.randomUUID().slice(0, 12)}`),
      (err) => err.code === grpc.status.PERMISSION_DENIED,
    );
  } finally {
    anonymous.close();
    reader.close();
  }
});

test('health reports SERVING', { skip }, async () => {
  // grpc.health.v1 from an inline descriptor (no .proto file needed), on the client's connection.
  const health = grpc.loadPackageDefinition(protoLoader.fromJSON({
    nested: { grpc: { nested: { health: { nested: { v1: { nested: {
      HealthCheckRequest: { fields: { service: { type: 'string', id: 1 } } },
      HealthCheckResponse: {
        fields: { status: { type: 'ServingStatus', id: 1 } },
        nested: { ServingStatus: { values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } } },
      },
      Health: { methods: { Check: { requestType: 'HealthCheckRequest', responseType: 'HealthCheckResponse' } } },
    } } } } } } },
  }, LOADER_OPTIONS)).grpc.health.v1;
  const stub = new health.Health(ADDR, grpc.credentials.createInsecure(), { channelOverride: clip.channel });
  for (const service of ['', 'clipd.v1.Clip', 'clipd.v1.Collections']) {
    const response = await new Promise((resolve, reject) =>
      stub.check({ service }, { deadline: Date.now() + 10000 }, (err, res) => (err ? reject(err) : resolve(res))));
    assert.equal(response.status, 'SERVING', service);
  }
});

test('the README example runs', { skip }, async () => {
  const stdout = await new Promise((resolve, reject) =>
    execFile(process.execPath, [path.join(__dirname, 'example.js')], { env: { ...process.env, CLIPD_ADDR: ADDR }, timeout: 60000 },
      (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out))));
  assert.match(stdout, /classified: \[ \[ 'red square'/);
  assert.match(stdout, /error: NOT_FOUND/);
});
