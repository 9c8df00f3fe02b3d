// The interop tests of restic (test/interop/restic.test.ts), unchanged, through a gateway whose backend is another
// coffre node: what a user does with restic against coffre works the same in front of an S3 service.
import { throughGateway } from '../helpers/target.js';

throughGateway();
await import('../interop/restic.test.js');
