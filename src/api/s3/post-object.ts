// api/s3/post-object: PostObject, the browser form upload authorised by a signed policy.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CoffreConfig } from '../../config/config.js';
import type { Model } from '../../model/model.js';
import { S3Errors } from '../../util/s3-error.js';

export interface PostObjectContext {
  req: IncomingMessage;
  res: ServerResponse;
  model: Model;
  config: CoffreConfig;
  requestId: string;
  bucketName: string;
  secure: boolean;
  fromLoopback: boolean;
}

export async function postObject(_ctx: PostObjectContext): Promise<void> {
  throw S3Errors.notImplemented('PostObject');
}
