// bun test preload: registers cdktf's Terraform matchers with bun's expect.
// (Testing.setupJest() relies on jest globals that bun does not provide.)
import { expect } from "bun:test";
import {
  getToHaveResourceWithProperties,
  returnMatcherToJest,
  toBeValidTerraform,
  toPlanSuccessfully,
} from "cdktf/lib/testing/matchers";

process.env.CHECKPOINT_DISABLE = "1";
type Ctor = Parameters<ReturnType<typeof getToHaveResourceWithProperties>>[1];
const withProps = getToHaveResourceWithProperties();

expect.extend({
  toHaveResource: (received: string, ctor: Ctor) => returnMatcherToJest(withProps(received, ctor, {})),
  toHaveResourceWithProperties: (received: string, ctor: Ctor, props: Record<string, unknown>) =>
    returnMatcherToJest(withProps(received, ctor, props)),
  toBeValidTerraform: (received: string) => returnMatcherToJest(toBeValidTerraform(received)),
  toPlanSuccessfully: (received: string) => returnMatcherToJest(toPlanSuccessfully(received)),
});

declare module "bun:test" {
  interface Matchers<T> {
    toHaveResource(ctor: Ctor): T;
    toHaveResourceWithProperties(ctor: Ctor, props: Record<string, unknown>): T;
    toBeValidTerraform(): T;
    toPlanSuccessfully(): T;
  }
}
