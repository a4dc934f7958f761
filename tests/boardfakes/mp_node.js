// Runs one MicroPython program in npm's WebAssembly MicroPython under node; its output goes to stdout.
//   node mp_node.js NPM_DIR (mp-1.10 | mp-1.27) HEAP_BYTES PROGRAM.py
// mp-1.10: npm `micropython` 1.1.8 (MicroPython 1.10, emscripten, GC heap fixed at HEAP_BYTES).
// mp-1.27: npm `@micropython/micropython-webassembly-pyscript` (MicroPython 1.27).
'use strict';
const fs = require('fs');
const path = require('path');
const [npmDir, version, heap, programPath] = process.argv.slice(2);
const code = fs.readFileSync(programPath, 'utf8');

if (version === 'mp-1.10') {
  // The port hands over stdout one byte at a time: collect it and write it once at exit.
  const chunks = [];
  global.mpjsPrintStdout = (b) => chunks.push(b);
  process.on('exit', () => fs.writeSync(1, Buffer.concat(chunks)));
  const log = console.log;
  console.log = () => {};  // the package logs its fs module when loaded
  require(path.join(npmDir, 'micropython', 'lib', 'micropython.js'));
  console.log = log;
  const wait = setInterval(() => {
    if (typeof global.mp_js_init !== 'function') return;
    clearInterval(wait);
    global.mp_js_init(parseInt(heap, 10));
    process.exitCode = global.mp_js_do_str(code) ? 1 : 0;
  }, 1);
} else if (version === 'mp-1.27') {
  import(path.join(npmDir, '@micropython', 'micropython-webassembly-pyscript', 'micropython.mjs')).then(async (m) => {
    const mp = await m.loadMicroPython({heapsize: parseInt(heap, 10), stdout: (d) => process.stdout.write(d),
                                         linebuffer: false});
    try {
      mp.runPython(code);
    } catch (e) {
      process.stdout.write(String(e) + '\n');
      process.exitCode = 1;
    }
  });
} else {
  process.stderr.write('unknown interpreter ' + version + '\n');
  process.exitCode = 2;
}
