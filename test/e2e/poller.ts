// A client that asks https://VIP:port/healthz every intervalMs on a fresh
// connection (curl, no keep-alive), recording each answer with its time. Used
// by the end-to-end tests and the failover benchmarks. Targets lab addresses only.
import { healthzStatus } from "../../lib/ops/chaos.ts";
export interface Sample {
  /** ms since the poller started, when the request was sent. */
  at: number;
  /** HTTP status, or 0 for no answer (connect error, timeout). */
  status: number;
  /** ms since the poller started, when the answer (or the client's timeout) came. */
  end: number;
}

export interface Poller {
  samples: Sample[];
  stop(): Promise<Sample[]>;
  /** ms since start, for marking when a fault was injected. */
  now(): number;
}

export function assertLabAddress(host: string): void {
  // Lab network rule: 198.18.0.0/15 only.
  if (!/^198\.(18|19)\.\d{1,3}\.\d{1,3}$/.test(host)) throw new Error(`refusing to poll ${host}: not a lab address`);
}

export function startPoller(host: string, port: number, intervalMs = 50, timeoutMs = 1000): Poller {
  assertLabAddress(host);
  const started = performance.now();
  const samples: Sample[] = [];
  const inflight = new Set<Promise<void>>();
  let running = true;
  const probe = async () => {
    const at = performance.now() - started;
    const status = await healthzStatus(host, port, timeoutMs);
    samples.push({ at, status, end: performance.now() - started });
  };
  const timer = setInterval(() => {
    if (!running) return;
    const p = probe().finally(() => inflight.delete(p));
    inflight.add(p);
  }, intervalMs);
  return {
    samples,
    now: () => performance.now() - started,
    async stop() {
      running = false;
      clearInterval(timer);
      await Promise.all(inflight);
      return samples.sort((a, b) => a.at - b.at);
    },
  };
}

export interface Outage {
  failed: number;
  total: number;
  /** ms from the fault to the last failed request sent after it; 0 when none failed. */
  lastFailureAfterFaultMs: number;
  /**
   * ms from the fault to the END of the last failed request (its error or the client's timeout):
   * what a user sees as the outage, and the failover figure; 0 when none failed.
   */
  lastFailureEndMs: number;
}

/** Failed = anything but 200. Counts only requests sent at or after faultAt. */
export function outage(samples: Sample[], faultAt: number): Outage {
  const after = samples.filter((s) => s.at >= faultAt);
  const failed = after.filter((s) => s.status !== 200);
  const last = failed.at(-1);
  return {
    failed: failed.length,
    total: after.length,
    lastFailureAfterFaultMs: last ? Math.round(last.at - faultAt) : 0,
    lastFailureEndMs: failed.length ? Math.round(Math.max(...failed.map((s) => s.end)) - faultAt) : 0,
  };
}

/** The failed requests sent at or after `from`, each as " (+ms: status)", for a test's log line. */
export function failuresText(samples: Sample[], from: number): string {
  return samples
    .filter((s) => s.at >= from && s.status !== 200)
    .map((s) => ` (+${Math.round(s.at - from)} ms: ${s.status || "no answer"})`)
    .join("");
}
