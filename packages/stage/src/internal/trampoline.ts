/**
 * How both stages resume the fibers their transitions wake.
 *
 * Resuming a parked fiber runs it at once, on the caller's stack: Effect's
 * `callback` resume calls the fiber's `evaluate` synchronously (only forks,
 * `yieldNow` and op-budget yields go through the scheduler). A head that
 * leaves promotes the oldest waiter by resuming it; if that waiter's head
 * finishes synchronously it leaves in turn, inside the first one's stack, and
 * so on: a chain of n promotions used to nest n fiber run loops, and the stack
 * overflowed after ~900.
 *
 * So a transition never resumes a fiber itself. It queues the resumption here
 * (`defer`) and, once its own state changes are complete, runs the queue
 * (`flush`). A flush requested while another one is running further up the
 * stack returns at once: the outer one runs the new entries after the current
 * one has returned (a trampoline). Promotion chains therefore take constant
 * stack whatever their length, and no woken fiber ever observes a transition
 * half done. A notify that wakes one waiter still resumes it before `notify`
 * returns, with no scheduler turn: the hot path gains a queue push and pop.
 *
 * Handing promotions to the scheduler instead (`scheduleTask`) would also
 * break the recursion, but every promotion of a chain would then wait for an
 * event-loop turn (the scheduler batches one `setImmediate` per round).
 *
 * One queue per thread (module state): a chain that crosses stages, or both
 * kinds of stage, is flattened too.
 *
 * @internal
 */

let fns: Array<((arg: any) => void) | undefined> = new Array(16)
let args: Array<unknown> = new Array(16)
let first = 0
let count = 0
let running = false

/** Queues `fn(arg)` for the next `flush`. */
export const defer = <A>(fn: (arg: A) => void, arg: A): void => {
  if (count === fns.length) grow()
  const at = (first + count) & (fns.length - 1)
  fns[at] = fn
  args[at] = arg
  count++
}

const grow = (): void => {
  const size = fns.length
  const nextFns: Array<((arg: any) => void) | undefined> = new Array(size * 2)
  const nextArgs: Array<unknown> = new Array(size * 2)
  for (let i = 0; i < count; i++) {
    nextFns[i] = fns[(first + i) & (size - 1)]
    nextArgs[i] = args[(first + i) & (size - 1)]
  }
  fns = nextFns
  args = nextArgs
  first = 0
}

/**
 * Runs the queued resumptions, and those they queue in turn, unless a flush
 * further up the stack is already running them. An exception thrown by one
 * does not strand the others: the first is rethrown once the queue is empty.
 */
export const flush = (): void => {
  if (running || count === 0) return
  running = true
  let failed = false
  let failure: unknown = undefined
  try {
    while (count > 0) {
      const fn = fns[first]!
      const arg = args[first]
      fns[first] = undefined
      args[first] = undefined
      first = (first + 1) & (fns.length - 1)
      count--
      try {
        fn(arg)
      } catch (error) {
        if (!failed) {
          failed = true
          failure = error
        }
      }
    }
  } finally {
    running = false
  }
  if (failed) throw failure
}

/**
 * `defer` then `flush`, for a transition whose last step wakes one fiber (a
 * notify): with nothing else queued or running, it is resumed directly.
 */
export const run = <A>(fn: (arg: A) => void, arg: A): void => {
  if (running || count > 0) {
    defer(fn, arg)
    flush()
    return
  }
  running = true
  try {
    fn(arg)
  } catch (error) {
    running = false
    flush()
    throw error
  }
  running = false
  flush()
}

/** How a transition asks for a fiber to be interrupted (queued like a resumption). */
export const interruptFiber = (fiber: { readonly interruptUnsafe: () => void }): void => fiber.interruptUnsafe()
