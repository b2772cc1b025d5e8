// What the bundled CLI gives yargs for `assert`: yargs checks a few of its own invariants with
// strictEqual and notStrictEqual, and loading Node's assert module (and its error formatting) cost
// every command about 5 ms. Same contract: a failed check throws an ERR_ASSERTION error.
function fail(message, actual, expected, operator) {
  if (message instanceof Error) throw message;
  const err = new Error(message ?? `expected ${String(actual)} ${operator} ${String(expected)}`);
  err.code = 'ERR_ASSERTION';
  err.actual = actual;
  err.expected = expected;
  err.operator = operator;
  throw err;
}

export function strictEqual(actual, expected, message) {
  if (!Object.is(actual, expected)) fail(message, actual, expected, 'strictEqual');
}

export function notStrictEqual(actual, expected, message) {
  if (Object.is(actual, expected)) fail(message, actual, expected, 'notStrictEqual');
}
