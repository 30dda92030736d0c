// Preloaded (`node --expose-gc --require`) into the service by the memory spec only: SIGUSR2
// runs a full garbage collection, so the spec measures what is still referenced, not when V8
// happens to collect.
process.on('SIGUSR2', () => global.gc());
