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
  toHaveResource: (received: unknown, ctor: Ctor) => returnMatcherToJest(withProps(received as string, ctor, {})),
  toHaveResourceWithProperties: (received: unknown, ctor: Ctor, props: Record<string, unknown>) =>
    returnMatcherToJest(withProps(received as string, ctor, props)),
  toBeValidTerraform: (received: unknown) => returnMatcherToJest(toBeValidTerraform(received as string)),
  toPlanSuccessfully: (received: unknown) => returnMatcherToJest(toPlanSuccessfully(received as string)),
});

declare module "bun:test" {
  interface Matchers<T> {
    toHaveResource(ctor: Ctor): T;
    toHaveResourceWithProperties(ctor: Ctor, props: Record<string, unknown>): T;
    toBeValidTerraform(): T;
    toPlanSuccessfully(): T;
  }
}
