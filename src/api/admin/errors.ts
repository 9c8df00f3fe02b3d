// api/admin/errors: an admin API refusal — the HTTP status and the one sentence the caller reads.
export class AdminError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
