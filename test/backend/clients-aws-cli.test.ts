// The interop tests of aws-cli (test/interop/aws-cli.test.ts), unchanged, through a gateway whose backend is another
// coffre node: what a user does with aws-cli against coffre works the same in front of an S3 service.
import { throughGateway } from '../helpers/target.js';

throughGateway();
await import('../interop/aws-cli.test.js');
