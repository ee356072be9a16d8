/**
 * Text tool for hanzo-node's Deno runtime (CONTRACTS §1c). `run` is async.
 *
 *   run({text, top?})        → {chars, words, lines, sentences, top_words: [[word, n], ...], sha256}
 *   slugify({text})          → "a-url-friendly-slug"
 *   wrap({text, width?})     → the text re-flowed to at most `width` (default 72) columns
 *
 *   hanzo-node run deno examples/deno/text.ts --params '{"text": "Hello world. Hello!"}'
 */

function text(p: unknown): string {
  const t = (p as { text?: unknown } | null)?.text;
  if (typeof t !== "string") throw new Error("params.text must be a string");
  return t;
}

export function words(t: string): string[] {
  return t.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
}

export async function run(p: unknown) {
  const t = text(p);
  const top = Number((p as { top?: unknown }).top ?? 5);
  const counts = new Map<string, number>();
  for (const w of words(t)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const top_words = [...counts.entries()]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, top);
  // Web Crypto is async: a real await inside the tool.
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(t));
  return {
    chars: [...t].length,
    words: words(t).length,
    lines: t === "" ? 0 : t.split("\n").length,
    sentences: (t.match(/[.!?]+(\s|$)/g) ?? []).length,
    top_words,
    sha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""),
  };
}

export function slugify(p: unknown): string {
  return text(p)
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
}

export function wrap(p: unknown): string {
  const width = Number((p as { width?: unknown }).width ?? 72);
  if (!Number.isInteger(width) || width < 1) throw new Error("params.width must be a positive integer");
  const lines: string[] = [];
  let line = "";
  for (const w of text(p).split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else {
      line = line ? `${line} ${w}` : w;
    }
  }
  if (line) lines.push(line);
  return lines.join("\n");
}
