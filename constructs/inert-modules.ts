// Modules cdktf requires at load time that this stack never uses, replaced for main.ts's synth
// by stand-ins that throw if ever called. cdktf's lib/private/fs.js requires `archiver` (zip,
// for TerraformAsset) on import: about half of cdktf's load time, for assets we never create.
// Registered by main.ts before cdktf loads; tests compare the cdk.tf.json main.ts writes with
// and without it (test/unit/synth-output.test.ts). No cdktf import here.
import type { BunPlugin } from "bun";

const unavailable = (name: string, why: string) => () => {
  throw new Error(`${name} is not loaded in kubeadm-ha's synth (${why}); see constructs/inert-modules.ts`);
};

export const INERT_MODULES: BunPlugin = {
  name: "kubeadm-ha inert modules",
  setup(build) {
    build.module("archiver", () => ({
      loader: "object",
      // __esModule + default: require("archiver") returns the function itself, as with the real one.
      exports: { __esModule: true, default: unavailable("archiver", "the stack has no TerraformAsset to zip") },
    }));
  },
};
