// Runs a Python script under the MicroPython WebAssembly port, so that code meant for the
// supervisor MCU is tested on MicroPython rather than on CPython.
//
//   node tests/micropython/run_mp.mjs SCRIPT.py [PACKAGE_DIR ...]
//
// Each PACKAGE_DIR's files (e.g. .mpy files from mpy-cross) are copied to /lib/<basename> in the
// emscripten file system, so `import <basename>.<module>` finds them (/lib is on sys.path).
// The script's stdout goes to stdout byte for byte; if the script raises, its traceback goes to
// stderr and the exit status is 1.
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const [script, ...packages] = process.argv.slice(2);
if (!script) {
  process.stderr.write("usage: node run_mp.mjs SCRIPT.py [PACKAGE_DIR ...]\n");
  process.exit(2);
}

// Collected and written once: the port hands over output a byte at a time.
const out = [];
const mp = await loadMicroPython({
  heapsize: 16 * 1024 * 1024,
  linebuffer: false,
  stdout: (bytes) => out.push(...bytes),
  stderr: (bytes) => process.stderr.write(bytes),
});

mp.FS.mkdirTree("/lib");
for (const dir of packages) {
  const target = path.posix.join("/lib", path.basename(path.resolve(dir)));
  mp.FS.mkdirTree(target);
  for (const name of fs.readdirSync(dir)) {
    const file = path.join(dir, name);
    if (fs.statSync(file).isFile()) {
      mp.FS.writeFile(path.posix.join(target, name), fs.readFileSync(file));
    }
  }
}

let status = 0;
try {
  mp.runPython(fs.readFileSync(script, "utf8"));
} catch (error) {
  process.stderr.write(`${error.message ?? error}\n`);
  status = 1;
}
process.stdout.write(Buffer.from(out), () => process.exit(status));
