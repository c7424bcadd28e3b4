/**
 * One stage shared by worker threads (`SharedStage`): the main thread makes
 * the memory and the shared request queue and hands both to two workers
 * (`examples/sharedWorker.ts`), whose fibers each get exactly their own
 * answer, whichever worker heads. Run by `test/examples.test.ts`.
 */
import { Worker } from "node:worker_threads"
import { Effect } from "effect"
import { SharedStage } from "@quiesce/stage"
import { makeSource } from "./source.ts"

export const sharedExample = (fibers: number) =>
  Effect.gen(function*() {
    // A SharedArrayBuffer is shared, not copied, when sent to a worker.
    const memory = SharedStage.makeMemory({ capacity: 64, maxWorkers: 4 })
    const requests = makeSource(64)
    return yield* Effect.forEach([0, 1], (index) =>
      Effect.acquireUseRelease(
        Effect.sync(() =>
          new Worker(new URL("./sharedWorker.ts", import.meta.url), {
            workerData: { example: "shared", memory, requests, index, fibers },
            // Only to run the package from its TypeScript sources, as this repository does.
            execArgv: ["--conditions=@quiesce/source"]
          })
        ),
        (worker) =>
          Effect.callback<ReadonlyArray<string>, Error>((resume) => {
            worker.once("message", (m: { answers?: ReadonlyArray<string>; failed?: string }) =>
              resume(m.answers !== undefined ? Effect.succeed(m.answers) : Effect.fail(new Error(m.failed)))
            )
            worker.once("error", (error) => resume(Effect.fail(error)))
          }),
        (worker) => Effect.promise(() => worker.terminate())
      ), { concurrency: "unbounded" })
  })
