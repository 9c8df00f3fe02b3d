// The interop tests of S3 remotes (test/interop/annex-s3.test.ts), unchanged, through a gateway whose backend is
// another coffre node: git-annex's S3 special remote (encryption=none and encryption=shared) and coffre's own S3
// remote store, retrieve and fsck in front of an S3 service as against coffre's own store.
import { throughGateway } from '../helpers/target.js';

throughGateway();
await import('../interop/annex-s3.test.js');
