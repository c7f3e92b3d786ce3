'use strict';
// A small Node.js client for clipd: @grpc/grpc-js, with proto/clipd/v1/clipd.proto loaded at run
// time by @grpc/proto-loader (no generated code). Field names are camelCase (keepCase: false):
// `topK`, `labelSet`, `efSearch`, as in protobuf's JSON mapping.
//
//   const { connect } = require('./client');
//   const clip = connect('localhost:50051');
//   const [vector] = await clip.embedTexts(['a photo of a red circle']);
//   clip.close();
//
// Inputs: a string is a text and a Buffer (or Uint8Array) an encoded image file. Every gRPC error
// is thrown as a ClipdError with the status code (`err.code`, a number in grpc.status; `err.codeName`).

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.join(__dirname, '..', '..', 'proto');
const LOADER_OPTIONS = {
  keepCase: false,
  longs: Number, // uint64 fields (byte limits, microseconds) fit a double
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
};
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

const statusNames = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

class ClipdError extends Error {
  constructor(err) {
    const codeName = statusNames[err.code] ?? String(err.code);
    super(`${codeName}: ${err.details}`);
    this.name = 'ClipdError';
    this.code = err.code; // e.g. grpc.status.NOT_FOUND
    this.codeName = codeName; // e.g. 'NOT_FOUND'
    this.details = err.details;
  }
}

function loadPackage(protoRoot = PROTO_ROOT) {
  const definition = protoLoader.loadSync('clipd/v1/clipd.proto', {
    ...LOADER_OPTIONS,
    includeDirs: [protoRoot],
  });
  return grpc.loadPackageDefinition(definition).clipd.v1;
}

function toInput(value) {
  if (typeof value === 'string') return { text: value };
  if (value instanceof Uint8Array) return { image: Buffer.from(value) };
  throw new TypeError('an input is a string (text) or a Buffer (an image file)');
}

function toVector(values) {
  return { values: Array.from(values) };
}

// { id, one of text / image / vector, metadata } -> Item.
function toItem(item) {
  const kinds = ['text', 'image', 'vector'].filter((k) => item[k] !== undefined && item[k] !== null);
  if (kinds.length !== 1) throw new TypeError(`item ${item.id}: give exactly one of text, image, vector`);
  const out = { id: item.id, metadata: item.metadata ?? {} };
  out[kinds[0]] = kinds[0] === 'vector' ? toVector(item.vector) : item[kinds[0]];
  return out;
}

class Client {
  constructor(target, credentials, { apiKey, timeoutMs = 30000, protoRoot } = {}) {
    const v1 = loadPackage(protoRoot);
    const options = {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    };
    this.clip = new v1.Clip(target, credentials, options);
    // The second stub shares the first one's connection.
    this.collections = new v1.Collections(target, credentials, {
      ...options,
      channelOverride: this.clip.getChannel(),
    });
    this.timeoutMs = timeoutMs;
    this.metadata = new grpc.Metadata();
    if (apiKey) this.metadata.set('authorization', `Bearer ${apiKey}`);
  }

  get channel() {
    return this.clip.getChannel();
  }

  call(stub, method, request) {
    return new Promise((resolve, reject) => {
      const deadline = Date.now() + this.timeoutMs;
      stub[method](request, this.metadata, { deadline }, (err, response) => {
        if (err) reject(new ClipdError(err));
        else resolve(response);
      });
    });
  }

  close() {
    this.clip.close();
  }

  // Clip: inference and search.

  modelInfo() {
    return this.call(this.clip, 'getModelInfo', {});
  }

  // One unit-length embedding (an array of numbers) per input, texts and images mixed, in order.
  async embed(inputs) {
    const response = await this.call(this.clip, 'embed', { inputs: inputs.map(toInput) });
    return response.embeddings.map((e) => e.values);
  }

  embedTexts(texts) {
    return this.embed(texts.map(String));
  }

  embedImages(images) {
    return this.embed(images.map((i) => Buffer.from(i)));
  }

  // Zero-shot classification against `labels` (optional `templates`, each with "{}") or a
  // classifier configured on the server. Returns per input { scores: [{ label, probability,
  // similarity }] best first, flagged: [label] }. topK 0: every label.
  async classify(inputs, { labels, classifier, topK = 0, templates = [] } = {}) {
    if ((labels === undefined) === (classifier === undefined)) {
      throw new TypeError('give labels or classifier, not both');
    }
    const request = { inputs: inputs.map(toInput), topK };
    if (classifier !== undefined) request.classifier = classifier;
    else request.labelSet = { labels, templates };
    const response = await this.call(this.clip, 'classify', request);
    return response.results.map((r) => ({ scores: r.scores, flagged: r.flagged }));
  }

  // The items nearest to one query, best first: query is { text } | { image } | { vector } | { id }.
  // Hits are { id, score, metadata }; `filter` keeps items whose metadata has every pair given.
  async search(collection, query, { topK = 10, filter = {}, efSearch = 0 } = {}) {
    const kinds = ['text', 'image', 'vector', 'id'].filter((k) => query[k] !== undefined && query[k] !== null);
    if (kinds.length !== 1) throw new TypeError('give exactly one of text, image, vector, id');
    const request = { collection, topK, filter, efSearch };
    request[kinds[0]] = kinds[0] === 'vector' ? toVector(query.vector) : query[kinds[0]];
    const response = await this.call(this.clip, 'search', request);
    return response.hits.map(({ id, score, metadata }) => ({ id, score, metadata }));
  }

  // Collections: writes.

  // With ifNotExists, a collection already there is described instead of refused.
  async createCollection(name, { m = 0, efConstruction = 0, efSearch = 0, ifNotExists = false } = {}) {
    const response = await this.call(this.collections, 'createCollection', {
      name, m, efConstruction, efSearch, ifNotExists,
    });
    return response.collection;
  }

  async dropCollection(name) {
    await this.call(this.collections, 'dropCollection', { name });
  }

  async listCollections() {
    return (await this.call(this.collections, 'listCollections', {})).collections;
  }

  // Adds or replaces items, all or nothing: [{ id, text | image | vector, metadata }].
  // Returns { inserted, replaced }.
  async upsert(collection, items) {
    const response = await this.call(this.collections, 'upsert', { collection, items: items.map(toItem) });
    return { inserted: response.inserted, replaced: response.replaced };
  }

  async delete(collection, ids) {
    return (await this.call(this.collections, 'delete', { collection, ids })).deleted;
  }
}

// A client for the server at `target` ('host:port'): TLS when `rootCertificates` (a PEM Buffer) is
// given, else plaintext. `apiKey` goes with every call as `authorization: Bearer KEY`; `timeoutMs`
// is each call's deadline.
function connect(target, { apiKey, rootCertificates, timeoutMs, protoRoot } = {}) {
  const credentials = rootCertificates
    ? grpc.credentials.createSsl(rootCertificates)
    : grpc.credentials.createInsecure();
  return new Client(target, credentials, { apiKey, timeoutMs, protoRoot });
}

module.exports = { connect, Client, ClipdError, LOADER_OPTIONS, status: grpc.status };
