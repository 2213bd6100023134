// ESM entry: the very same objects as the CommonJS entry (main.js), so `instanceof` and the
// error classes agree however the package is loaded.
import { createRequire } from 'node:module';

const cjs = createRequire(import.meta.url)('./main.js');

export const { JobClient, Query, errors, __napiBindingTarget } = cjs;
export default cjs;
