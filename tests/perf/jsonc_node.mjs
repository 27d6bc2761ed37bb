// The peer of the devcontainer benchmark: Microsoft's `jsonc-parser` (the parser devcontainers/cli
// uses), run by Node on the same files as our Rust parser + audit. Usage:
//   node jsonc_node.mjs ITERATIONS FILE...
// Prints one JSON object: per file set, the median wall time of one pass over all files.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const jsonc = require("jsonc-parser");

const [iterationsArg, ...files] = process.argv.slice(2);
const iterations = Number(iterationsArg);
if (!Number.isInteger(iterations) || iterations < 1 || files.length === 0) {
  console.error("usage: node jsonc_node.mjs ITERATIONS FILE...");
  process.exit(2);
}
const texts = files.map((f) => readFileSync(f, "utf8"));
const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);

// The CLI calls `jsonc.parse(content)` with default options; we pass an error array and allow
// trailing commas so both sides do the same work (error collection included).
function pass() {
  let keys = 0;
  for (const text of texts) {
    const errors = [];
    const value = jsonc.parse(text, errors, { allowTrailingComma: true });
    if (value && typeof value === "object") keys += Object.keys(value).length;
  }
  return keys;
}

for (let i = 0; i < Math.min(iterations, 20); i++) pass(); // warm up the JIT
const samples = [];
let sink = 0;
for (let i = 0; i < iterations; i++) {
  const start = process.hrtime.bigint();
  sink += pass();
  samples.push(Number(process.hrtime.bigint() - start));
}
samples.sort((a, b) => a - b);
const median = samples[Math.floor(samples.length / 2)];
console.log(JSON.stringify({ peer: "jsonc-parser@3.3.1 (node " + process.version + ")", files: files.length, bytes, iterations, median_ns: median, sink }));
