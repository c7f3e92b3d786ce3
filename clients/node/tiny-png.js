'use strict';
// Minimal PNG encoder (node:zlib, no image library) for the example and the test: draws what the
// bundled demo model knows, a coloured shape on a white background.

const zlib = require('node:zlib');

const BACKGROUND = [245, 245, 245];
const RED = [220, 30, 35];
const GREEN = [35, 170, 60];
const BLUE = [35, 70, 220];

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buffer) {
  let c = 0xffffffff;
  for (const byte of buffer) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(tag, data) {
  const body = Buffer.concat([Buffer.from(tag, 'latin1'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

// An 8-bit RGB PNG; pixel(x, y) -> [r, g, b].
function encodePng(width, height, pixel) {
  const raw = Buffer.alloc(height * (1 + width * 3));
  let at = 0;
  for (let y = 0; y < height; y++) {
    raw[at++] = 0; // filter: none
    for (let x = 0; x < width; x++) for (const v of pixel(x, y)) raw[at++] = v;
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit, RGB, deflate, no filter, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const solidPng = (rgb, side = 64) => encodePng(side, side, () => rgb);

// A square of `rgb`, 5/8 of the side, centred.
function squarePng(rgb, side = 64) {
  const half = (side * 5) / 16;
  const c = side / 2;
  return encodePng(side, side, (x, y) =>
    Math.abs(x + 0.5 - c) <= half && Math.abs(y + 0.5 - c) <= half ? rgb : BACKGROUND);
}

// A disc of `rgb`, 3/4 of the side across, centred.
function circlePng(rgb, side = 64) {
  const r = (side * 3) / 8;
  const c = side / 2;
  return encodePng(side, side, (x, y) => ((x + 0.5 - c) ** 2 + (y + 0.5 - c) ** 2 <= r * r ? rgb : BACKGROUND));
}

module.exports = { encodePng, solidPng, squarePng, circlePng, RED, GREEN, BLUE };
