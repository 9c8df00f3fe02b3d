// S3Error: a refusal with an S3 error code and HTTP status. Any layer may throw one; the S3 API turns it into
// the XML error body clients expect (and a bare status for HEAD).

export class S3Error extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    readonly extra: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'S3Error';
  }
}

// The common refusals, named so call sites read as the S3 reference does.
export const S3Errors = {
  accessDenied: (msg = 'Access Denied') => new S3Error('AccessDenied', 403, msg),
  invalidArgument: (msg: string, extra: Record<string, string> = {}) =>
    new S3Error('InvalidArgument', 400, msg, extra),
  invalidRequest: (msg: string) => new S3Error('InvalidRequest', 400, msg),
  notImplemented: (what: string) =>
    new S3Error(
      'NotImplemented',
      501,
      `A header or operation you provided implies functionality that is not implemented: ${what}`,
    ),
  noSuchBucket: (bucket: string) =>
    new S3Error('NoSuchBucket', 404, 'The specified bucket does not exist', { BucketName: bucket }),
  noSuchKey: (key: string) =>
    new S3Error('NoSuchKey', 404, 'The specified key does not exist.', { Key: key }),
  noSuchVersion: (key: string, versionId: string) =>
    new S3Error('NoSuchVersion', 404, 'The specified version does not exist.', {
      Key: key,
      VersionId: versionId,
    }),
  noSuchUpload: (uploadId: string) =>
    new S3Error(
      'NoSuchUpload',
      404,
      'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
      { UploadId: uploadId },
    ),
  malformedXml: () =>
    new S3Error(
      'MalformedXML',
      400,
      'The XML you provided was not well-formed or did not validate against our published schema.',
    ),
  badDigest: (msg = 'The Content-MD5 you specified did not match what we received.') =>
    new S3Error('BadDigest', 400, msg),
  invalidDigest: (msg = 'The Content-MD5 you specified is not valid.') =>
    new S3Error('InvalidDigest', 400, msg),
  internal: (msg = 'We encountered an internal error. Please try again.') =>
    new S3Error('InternalError', 500, msg),
} as const;
