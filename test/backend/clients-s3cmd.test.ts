// The interop tests of s3cmd (test/interop/s3cmd.test.ts), unchanged, through a gateway whose backend is another
// coffre node: what a user does with s3cmd against coffre works the same in front of an S3 service.
import { throughGateway } from '../helpers/target.js';

throughGateway();
await import('../interop/s3cmd.test.js');
