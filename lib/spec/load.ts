// Reading a spec: YAML text -> validated ClusterSpec, or a UserError that names the field.
import { existsSync, readFileSync } from "node:fs";
import { parseDocument } from "yaml";
import { UserError } from "../errors.ts";
import { type ClusterSpec, ClusterSpecSchema } from "./schema.ts";

export function parseSpec(text: string, source = "cluster.yaml"): ClusterSpec {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const where = e.linePos?.[0] ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : "";
    throw new UserError(`${source}: malformed YAML${where}: ${e.message.split("\n")[0]}. Fix the syntax and run again.`);
  }
  const result = ClusterSpecSchema.safeParse(doc.toJS());
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join(".") || "(top level)"}: ${i.message}`);
    throw new UserError(`${source} is not a valid cluster spec:\n${lines.join("\n")}`);
  }
  return result.data;
}

/** Which spec file to use: $CLUSTER_SPEC, else cluster.yaml, else the embedded example. */
export function specPath(explicit?: string): string {
  if (explicit) return explicit;
  if (process.env.CLUSTER_SPEC) return process.env.CLUSTER_SPEC;
  return existsSync("cluster.yaml") ? "cluster.yaml" : "cluster.example.yaml";
}

export function loadSpec(path = specPath()): ClusterSpec {
  if (!existsSync(path)) throw new UserError(`spec file ${path} does not exist. Pass an existing file or set CLUSTER_SPEC.`);
  return parseSpec(readFileSync(path, "utf8"), path);
}
