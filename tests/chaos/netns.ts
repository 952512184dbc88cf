// The chaos harness's hosts: one network namespace per node, each joined by a veth pair to a
// bridge the harness creates, with its own address. Faults act on the host end of a node's
// veth: `down` cuts the link with no FIN and no RST (the namespace sees silence), a tbf qdisc
// limits bandwidth, and a tbf at a few bytes a second toward the node is one-way loss (this
// kernel has tbf but neither netem nor tc classifiers). Everything is removed by `destroy()`,
// and `sweepStale()` removes what an interrupted run of a dead harness left behind.

/** Prefix of every namespace, bridge and veth the harness makes (then its pid). */
const PREFIX = "hlc";
/** The nodes' subnet: node i has 10.213.0.(10 + i). */
const SUBNET = "10.213.0";

async function run(cmd: string, args: string[], allowFailure = false): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success && !allowFailure) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`${cmd} ${args.join(" ")} failed: ${err}`);
  }
  return text;
}

/** Why this machine cannot host the harness, or null if it can. */
export async function unsupported(): Promise<string | null> {
  if (Deno.build.os !== "linux") return "network namespaces need Linux";
  if (Deno.uid() !== 0) {
    return "deno task chaos needs root to create network namespaces (ip netns, veth, bridge); " +
      "run it as root";
  }
  try {
    await run("ip", ["netns", "list"]);
    await run("tc", ["-V"]);
  } catch (error) {
    return `iproute2 (ip, tc) is not usable: ${(error as Error).message}`;
  }
  const probe = `${PREFIX}${Deno.pid}probe`;
  try {
    await run("ip", ["netns", "add", probe]);
  } catch (error) {
    return `cannot create network namespaces here: ${(error as Error).message}`;
  } finally {
    await run("ip", ["netns", "del", probe], true);
  }
  return null;
}

/** Removes the namespaces and bridges of harness processes that no longer run. */
export async function sweepStale(): Promise<number> {
  const names = (await run("ip", ["netns", "list"])).split("\n").map((l) => l.split(" ")[0]);
  const links = (await run("ip", ["-o", "link", "show", "type", "bridge"])).split("\n")
    .map((l) => l.split(": ")[1]?.split("@")[0] ?? "");
  let removed = 0;
  for (const name of [...names, ...links]) {
    const m = new RegExp(`^${PREFIX}(\\d+)`).exec(name);
    if (!m || Number(m[1]) === Deno.pid || alive(Number(m[1]))) continue;
    if (names.includes(name)) await run("ip", ["netns", "del", name], true);
    else await run("ip", ["link", "del", name], true);
    removed++;
  }
  return removed;
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** The namespaces of one run. */
export class Hosts {
  readonly #id = `${PREFIX}${Deno.pid}`;
  readonly #count: number;
  #made = false;

  private constructor(count: number) {
    this.#count = count;
  }

  /**
   * Creates the bridge and `count` namespaces, each with its address and loopback up; with
   * `notsentLowat`, each namespace's `net.ipv4.tcp_notsent_lowat` is set to it.
   */
  static async create(
    count: number,
    options: { notsentLowat?: number; congestionControl?: string } = {},
  ): Promise<Hosts> {
    const hosts = new Hosts(count);
    hosts.#made = true; // from here on, destroy() has something to remove
    const br = hosts.bridge;
    await run("ip", ["link", "add", br, "type", "bridge"]);
    await run("ip", ["link", "set", br, "up"]);
    for (let i = 0; i < count; i++) {
      const ns = hosts.ns(i), host = hosts.hostEnd(i), inner = `${hosts.#id}p${i}`;
      await run("ip", ["netns", "add", ns]);
      await run("ip", ["link", "add", host, "type", "veth", "peer", "name", inner]);
      await run("ip", ["link", "set", inner, "netns", ns]);
      await run("ip", ["-n", ns, "link", "set", inner, "name", "eth0"]);
      await run("ip", ["-n", ns, "addr", "add", `${hosts.addr(i)}/24`, "dev", "eth0"]);
      await run("ip", ["-n", ns, "link", "set", "eth0", "up"]);
      await run("ip", ["-n", ns, "link", "set", "lo", "up"]);
      if (options.notsentLowat) {
        // The kernel then holds at most this many unsent bytes per socket, so a full link
        // backs up into the application's queue, where heartbeats go first.
        const setting = `net.ipv4.tcp_notsent_lowat=${options.notsentLowat}`;
        await run("ip", ["netns", "exec", ns, "sysctl", "-qw", setting]);
      }
      if (options.congestionControl) {
        const setting = `net.ipv4.tcp_congestion_control=${options.congestionControl}`;
        await run("ip", ["netns", "exec", ns, "sysctl", "-qw", setting]);
      }
      await run("ip", ["link", "set", host, "master", br]);
      await run("ip", ["link", "set", host, "up"]);
    }
    return hosts;
  }

  /** The bridge's name. */
  get bridge(): string {
    return `${this.#id}br`;
  }

  /** Namespace of node `i`. */
  ns(i: number): string {
    return `${this.#id}n${i}`;
  }

  /** Address of node `i`. */
  addr(i: number): string {
    return `${SUBNET}.${10 + i}`;
  }

  /** The host end of node `i`'s veth (on the bridge). */
  hostEnd(i: number): string {
    return `${this.#id}h${i}`;
  }

  /** Partition: node `i`'s link goes down (no FIN, no RST), or comes back. */
  async link(i: number, up: boolean): Promise<void> {
    await run("ip", ["link", "set", this.hostEnd(i), up ? "up" : "down"]);
  }

  /**
   * One-way loss: what flows toward node `i` passes at 8 kbit/s with a queue of one packet
   * (nearly everything is dropped), while what it sends flows on; `false` removes it.
   */
  async oneWayLoss(i: number, on: boolean): Promise<void> {
    const dev = this.hostEnd(i);
    if (!on) return void await run("tc", ["qdisc", "del", "dev", dev, "root"], true);
    await run("tc", [
      ...["qdisc", "add", "dev", dev, "root", "tbf"],
      ...["rate", "8kbit", "burst", "1600", "limit", "1600"],
    ]);
  }

  /** Bandwidth limit on node `i`'s link, both ways (tbf at `rate`); `null` removes it. */
  async bandwidth(i: number, rate: string | null): Promise<void> {
    const ends: [string[], string][] = [[[], this.hostEnd(i)], [["-n", this.ns(i)], "eth0"]];
    for (const [where, dev] of ends) {
      if (rate === null) {
        await run("tc", [...where, "qdisc", "del", "dev", dev, "root"], true);
      } else {
        await run("tc", [
          ...where,
          ...["qdisc", "add", "dev", dev, "root", "tbf"],
          ...["rate", rate, "burst", "32kbit", "latency", "200ms"],
        ]);
      }
    }
  }

  /** Removes every namespace (their veths go with them) and the bridge. Never throws. */
  async destroy(): Promise<void> {
    if (!this.#made) return;
    this.#made = false;
    for (let i = 0; i < this.#count; i++) {
      await run("ip", ["netns", "del", this.ns(i)], true);
      await run("ip", ["link", "del", this.hostEnd(i)], true); // if the namespace never got it
    }
    await run("ip", ["link", "del", this.bridge], true);
  }

  /** Names of this run's namespaces that still exist (empty after `destroy()`). */
  async leftovers(): Promise<string[]> {
    const names = (await run("ip", ["netns", "list"])).split("\n").map((l) => l.split(" ")[0]);
    return names.filter((n) => n.startsWith(this.#id));
  }
}
