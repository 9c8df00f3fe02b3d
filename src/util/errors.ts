// Errors that carry meaning across layers. A UserError is a mistake the user can fix: the CLI prints its
// message as one line and exits non-zero, never with a stack trace.

export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
