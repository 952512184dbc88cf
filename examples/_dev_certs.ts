// Development certificates, made at run time with openssl: a throwaway CA and a leaf it signs
// (basicConstraints CA:FALSE, SAN localhost and 127.0.0.1), for tests, benchmarks and the
// QUIC demo. Nothing is committed and the keys never leave a temporary directory.

/** PEM strings for a QUIC (or TLS) test setup. */
export interface TestCerts {
  caCert: string;
  cert: string;
  key: string;
}

let cached: Promise<TestCerts> | null = null;

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Makes (once per process) a CA and a leaf certificate for localhost / 127.0.0.1. */
export function testCerts(): Promise<TestCerts> {
  cached ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "heartline-certs-" });
    try {
      await openssl([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
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
      await openssl([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
      ], dir);
      await Deno.writeTextFile(
        `${dir}/leaf.ext`,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" +
          "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
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
  })();
  return cached;
}
