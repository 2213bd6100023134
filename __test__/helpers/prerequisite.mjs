// One rule for a suite whose prerequisite is missing (not root, no Wine, no Python, a build not
// there, a tool not installed): outside CI the tests are skipped, their reason printed; in CI
// (`CI=true`, as `.ci/run` runs `npm test`) they fail with that reason, so CI is never green by
// skipping. Use: `const skip = prerequisite(missing && 'why')`, then `{ skip }` on the tests;
// for a check made inside a test, `prerequisiteMissing(t, 'why')`.
import { test } from 'node:test'

export const inCI = () => /^(1|true)$/i.test(process.env.CI ?? '')

const printed = new Set()

/**
 * `reason` (a string) when a prerequisite is missing, else false. Returns what `{ skip }` takes:
 * outside CI the reason (printed once); in CI false, after adding a failing test that names it.
 */
export function prerequisite(reason) {
  if (!reason) return false
  if (inCI()) {
    if (!printed.has(reason)) {
      printed.add(reason)
      test(`prerequisite: ${reason}`, () => {
        throw new Error(`a prerequisite is missing in CI (CI=${process.env.CI}): ${reason}`)
      })
    }
    return reason
  }
  if (!printed.has(reason)) {
    printed.add(reason)
    console.log(`# skipped: ${reason}`)
  }
  return reason
}

/** Inside a running test: skip it with `reason` outside CI, fail it in CI. */
export function prerequisiteMissing(t, reason) {
  if (inCI()) throw new Error(`a prerequisite is missing in CI (CI=${process.env.CI}): ${reason}`)
  console.log(`# skipped: ${reason}`)
  return t.skip(reason)
}
