// Runs a Python script under the MicroPython WebAssembly port with a whole library tree on /lib,
// as a flashed supervisor board has it (/lib/protocol, /lib/firmware/mcu, ...).
//
//   node tests/run_mp.mjs SCRIPT.py LIB_DIR
//
// LIB_DIR's files and folders are copied to /lib recursively. The script's stdout goes to stdout byte for byte; if the script
// raises, its traceback goes to stderr and the exit status is 1.
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const [script, lib] = process.argv.slice(2);
if (!script || !lib) {
  process.stderr.write("usage: node run_mp.mjs SCRIPT.py LIB_DIR\n");
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

function copyTree(source, target) {
  mp.FS.mkdirTree(target);
  for (const name of fs.readdirSync(source)) {
    const file = path.join(source, name);
    if (fs.statSync(file).isDirectory()) {
      copyTree(file, path.posix.join(target, name));
    } else {
      mp.FS.writeFile(path.posix.join(target, name), fs.readFileSync(file));
    }
  }
}

copyTree(lib, "/lib");

let status = 0;
try {
  mp.runPython(fs.readFileSync(script, "utf8"));
} catch (error) {
  process.stderr.write(`${error.message ?? error}\n`);
  status = 1;
}
process.stdout.write(Buffer.from(out), () => process.exit(status));
