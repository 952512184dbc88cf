// One receiving worker of the `recv-workers` role (bench/proc/role.ts): a messenger of its own
// on the shared port (SO_REUSEPORT), counting messages and reporting to the main thread.

import { Messenger, TcpTransport } from "../../mod.ts";

/** What the main thread sends a worker. */
export interface WorkerStart {
  /** The address every worker binds, `tcp://127.0.0.1:<port>`. */
  addr: string;
  /** Worker index (part of the node name). */
  index: number;
  /** Take messages in batches. */
  batch: boolean;
}

/** What a worker reports: messages so far, and when it got its first. */
export interface WorkerCount {
  kind: "listening" | "count";
  messages: number;
  first: number;
}

const self = globalThis as unknown as {
  onmessage: ((e: MessageEvent<WorkerStart>) => void) | null;
  postMessage(m: WorkerCount): void;
};

self.onmessage = async (e) => {
  const { addr, index, batch } = e.data;
  const m = new Messenger({
    name: `recv-${index}`,
    logger: () => {},
    transports: [new TcpTransport({ reusePort: true })],
  });
  await m.listen(addr);
  let messages = 0, first = 0, reported = 0;
  self.postMessage({ kind: "listening", messages, first });
  const report = () => {
    if (messages - reported < 10_000) return;
    reported = messages;
    self.postMessage({ kind: "count", messages, first });
  };
  if (batch) {
    for await (const b of m.messages({ batch: true })) {
      if (first === 0) first = performance.timeOrigin + performance.now();
      messages += b.length;
      report();
    }
  } else {
    for await (const _ of m.messages()) {
      if (first === 0) first = performance.timeOrigin + performance.now();
      messages++;
      report();
    }
  }
};
