/**
 * Markdown tool for hanzo-node's Deno runtime (CONTRACTS §1c), with an npm dependency:
 * the node fetches `marked` into its module cache once (a prepare step that runs none
 * of this code), and the tool then runs with the cache read-only and no network.
 *
 *   run({markdown})          → {html, headings: [{level, text, id}], words}
 *   headings({markdown})     → the table of contents only (no npm code involved)
 *
 *   hanzo-node run deno examples/deno/markdown.ts --params '{"markdown": "# Title\n\nSome *text*."}'
 */
import { marked } from "npm:marked@12.0.2";

function source(p: unknown): string {
  const md = (p as { markdown?: unknown } | null)?.markdown;
  if (typeof md !== "string") throw new Error("params.markdown must be a string");
  return md;
}

export function headings(p: unknown) {
  const out: { level: number; text: string; id: string }[] = [];
  let fenced = false;
  for (const line of source(p).split("\n")) {
    if (/^(```|~~~)/.test(line)) fenced = !fenced;
    const m = !fenced && /^(#{1,6})\s+(.+?)\s*#*\s*$/.exec(line);
    if (m) {
      const text = m[2];
      const id = text.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-|-$/g, "");
      out.push({ level: m[1].length, text, id });
    }
  }
  return out;
}

export async function run(p: unknown) {
  const md = source(p);
  const html = await marked.parse(md, { async: true });
  return { html, headings: headings(p), words: (md.match(/\S+/g) ?? []).length };
}
