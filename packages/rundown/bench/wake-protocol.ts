/** Slots and commands shared by wake.bench.ts and wake-worker.ts. */
export const Slot = { SEQ: 0, CMD: 1, ACK: 2, FLAG: 3, SIZE: 4 } as const
export const Cmd = { ACQUIRE: 1, RELEASE: 2, NOTIFY: 3, POST: 4, EXIT: 9 } as const
