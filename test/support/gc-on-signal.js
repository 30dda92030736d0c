// Preloaded (`node --expose-gc --require`) into the service by the memory spec only: SIGUSR2
// runs a full garbage collection, then, once what it freed has been finalised, another, and
// prints what is still referenced, so the spec measures that, not when V8 happens to collect
// or when malloc returns freed pages to the system.
process.on('SIGUSR2', () => {
  global.gc();
  setTimeout(() => {
    global.gc();
    const { external, heapUsed } = process.memoryUsage();
    process.stdout.write(`after-gc ${JSON.stringify({ external, heapUsed })}\n`);
  }, 500);
});
