// The interop tests of rclone (test/interop/rclone.test.ts), unchanged, through a gateway whose backend is another
// coffre node: what a user does with rclone against coffre works the same in front of an S3 service.
import { throughGateway } from '../helpers/target.js';

throughGateway();
await import('../interop/rclone.test.js');
