/**
 * CSV tool for hanzo-node's Deno runtime (CONTRACTS §1c).
 *
 *   run({csv, delimiter?})   → {columns, rows, stats}: per numeric column count/min/max/sum/mean
 *   parse({csv, delimiter?}) → [{column: value, ...}, ...] (numbers stay strings)
 *   to_csv({rows})           → CSV text of an array of objects (RFC 4180 quoting)
 *
 *   hanzo-node run deno examples/deno/csv.ts --params '{"csv": "a,b\n1,2\n3,4"}'
 */

type Params = { csv?: unknown; delimiter?: unknown };

function input(p: unknown): { csv: string; delimiter: string } {
  if (typeof p !== "object" || p === null || Array.isArray(p)) {
    throw new Error("params must be an object like {\"csv\": \"a,b\\n1,2\"}");
  }
  const { csv, delimiter = "," } = p as Params;
  if (typeof csv !== "string") throw new Error("params.csv must be a string");
  if (typeof delimiter !== "string" || delimiter.length !== 1) {
    throw new Error("params.delimiter must be one character");
  }
  return { csv, delimiter };
}

/** Splits CSV text into records, honouring quotes ("a ""b""", embedded newlines). */
export function records(csv: string, delimiter = ","): string[][] {
  const out: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < csv.length; i++) {
    const c = csv[i];
    if (quoted) {
      if (c === '"' && csv[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c === '"' && field === "") {
      quoted = true;
    } else if (c === delimiter) {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && csv[i + 1] === "\n") i++;
      row.push(field);
      out.push(row);
      row = [];
      field = "";
    } else {
      field += c;
    }
  }
  if (quoted) throw new Error("unterminated quoted field");
  if (field !== "" || row.length) {
    row.push(field);
    out.push(row);
  }
  return out.filter((r) => !(r.length === 1 && r[0] === ""));
}

export function parse(p: unknown): Record<string, string>[] {
  const { csv, delimiter } = input(p);
  const [header, ...body] = records(csv, delimiter);
  if (!header) return [];
  return body.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i] ?? ""])));
}

type Stats = { count: number; min: number; max: number; sum: number; mean: number };

export function run(p: unknown) {
  const { csv, delimiter } = input(p);
  const [header = [], ...body] = records(csv, delimiter);
  const stats: Record<string, Stats> = {};
  header.forEach((name, i) => {
    const values = body.map((r) => r[i]?.trim() ?? "").filter((v) => v !== "");
    const nums = values.map(Number);
    if (values.length === 0 || nums.some((n) => Number.isNaN(n))) return;
    const sum = nums.reduce((a, b) => a + b, 0);
    stats[name] = {
      count: nums.length,
      min: Math.min(...nums),
      max: Math.max(...nums),
      sum,
      mean: sum / nums.length,
    };
  });
  console.log(`csv: ${body.length} rows, ${header.length} columns`);
  return { columns: header, rows: body.length, stats };
}

export function to_csv(p: unknown): string {
  const rows = (p as { rows?: unknown })?.rows;
  if (!Array.isArray(rows)) throw new Error("params.rows must be an array of objects");
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r ?? {})))];
  const cell = (v: unknown) => {
    const s = v === undefined || v === null ? "" : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  return [columns, ...rows.map((r) => columns.map((c) => r?.[c]))]
    .map((r) => r.map(cell).join(","))
    .join("\n") + "\n";
}
