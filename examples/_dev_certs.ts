// Development certificates, made at run time with openssl: a throwaway CA and leaves it signs
// (basicConstraints CA:FALSE), for tests, benchmarks and the QUIC demo. Nothing is committed
// and the keys never leave a temporary directory.

/** PEM strings for a QUIC (or TLS) test setup. */
export interface TestCerts {
  /** The CA's certificate: what dialers trust. */
  caCert: string;
  /** A leaf certificate the CA signed. */
  cert: string;
  /** The leaf's private key. */
  key: string;
}

/**
 * The name the dev leaf carries beside localhost and 127.0.0.1: a cluster name under
 * `.internal`, which no public CA may certify, for dialing with `serverName` (docs/security.md).
 */
export const CLUSTER_SERVER_NAME = "nodes.heartline.internal";

let cached: Promise<TestCerts> | null = null;

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/**
 * Makes a fresh CA and a leaf it signs for `subjectAltName` (openssl syntax, e.g.
 * `DNS:localhost,IP:127.0.0.1`).
 */
export async function makeCerts(subjectAltName: string): Promise<TestCerts> {
  const dir = await Deno.makeTempDir({ prefix: "heartline-certs-" });
  try {
    await openssl([
      "req",
      "-x509",
      ...EC,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "1",
      "-subj",
      "/CN=heartline test CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ], dir);
    await openssl(
      ["req", ...EC, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=node"],
      dir,
    );
    await Deno.writeTextFile(
      `${dir}/leaf.ext`,
      "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" +
        `extendedKeyUsage=serverAuth\nsubjectAltName=${subjectAltName}\n`,
    );
    await openssl([
      "x509",
      "-req",
      "-in",
      "leaf.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "leaf.pem",
      "-days",
      "1",
      "-extfile",
      "leaf.ext",
    ], dir);
    return {
      caCert: await Deno.readTextFile(`${dir}/ca.pem`),
      cert: await Deno.readTextFile(`${dir}/leaf.pem`),
      key: await Deno.readTextFile(`${dir}/leaf.key`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Makes (once per process) a CA and a leaf for localhost, 127.0.0.1 and
 * {@linkcode CLUSTER_SERVER_NAME}.
 */
export function testCerts(): Promise<TestCerts> {
  cached ??= makeCerts(`DNS:localhost,IP:127.0.0.1,DNS:${CLUSTER_SERVER_NAME}`);
  return cached;
}
