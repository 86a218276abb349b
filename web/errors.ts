// One error type for the HTTP layer: status + message, rendered as JSON {error} by the app's error handler.
export class HttpError extends Error {
  constructor(readonly status: 400 | 401 | 403 | 404 | 409 | 413 | 415 | 422 | 429 | 500 | 503, message: string) {
    super(message);
  }
}
