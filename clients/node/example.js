'use strict';
// clipd from Node.js: node example.js [IMAGE_FILE]
// (server: $CLIPD_ADDR, default localhost:50051; API key, if the server wants one: $CLIPD_API_KEY).
const fs = require('node:fs');
const { connect } = require('./client');
const { squarePng, RED } = require('./tiny-png');

async function main() {
  const image = process.argv[2] ? fs.readFileSync(process.argv[2]) : squarePng(RED);
  const clip = connect(process.env.CLIPD_ADDR ?? 'localhost:50051', { apiKey: process.env.CLIPD_API_KEY });
  try {
    const [vector] = await clip.embedImages([image]);
    const [result] = await clip.classify([image], { labels: ['red square', 'blue circle', 'green star'], topK: 2 });
    console.log('classified:', result.scores.map((s) => [s.label, +s.probability.toFixed(3)]));
    await clip.createCollection('example', { ifNotExists: true });
    await clip.upsert('example', [
      { id: 'picture', image, metadata: { kind: 'image' } },
      { id: 'caption', text: 'a blue circle', metadata: { kind: 'text' } },
    ]);
    for (const hit of await clip.search('example', { text: 'a red square' }, { topK: 2 })) {
      console.log('hit:', hit.id, hit.score.toFixed(3), hit.metadata);
    }
    await clip.search('no-such-collection', { vector }).catch((err) => console.log('error:', err.codeName, err.details));
  } finally {
    clip.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
