#!/usr/bin/env node
// Koop serving the GeoJSON files of one directory as ArcGIS FeatureServer layers, for
// goalpost's connector tests.
//
//   node server.js --data-dir DIR [--max-record-count N] [--id-field NAME] [--no-cap]
//
// The same settings can come from the environment: KOOP_DATA_DIR, KOOP_MAX_RECORD_COUNT,
// KOOP_ID_FIELD, KOOP_CAP_PAGE_SIZE=0.
//
// The server listens on 127.0.0.1 with a port picked by the OS and prints exactly one line
// `KOOP_LISTENING <port>` on stdout once it accepts connections. It exits when its stdin
// reaches end-of-file, so it does not outlive the test process that started it.
//
// A file DIR/<name>.geojson is served at
//   /file-geojson/rest/services/<name>/FeatureServer/0/query
// and is read again on every request (no cache), so a test can rewrite it between two runs.
//
// Koop by itself returns every matching feature when a query has no resultRecordCount. A real
// ArcGIS FeatureServer returns at most maxRecordCount features and sets
// exceededTransferLimit=true; unless --no-cap is given, a `before` hook gives Koop that
// behaviour by capping resultRecordCount at maxRecordCount (except for returnIdsOnly and
// returnCountOnly queries, which ArcGIS does not page either).
'use strict';

const path = require('path');
const fs = require('fs');

function parseArgs(argv) {
  const out = {
    dataDir: process.env.KOOP_DATA_DIR,
    maxRecordCount: process.env.KOOP_MAX_RECORD_COUNT,
    idField: process.env.KOOP_ID_FIELD,
    cap: process.env.KOOP_CAP_PAGE_SIZE !== '0',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) {
        fail(`${arg} needs a value`);
      }
      return argv[++i];
    };
    if (arg === '--data-dir') out.dataDir = value();
    else if (arg === '--max-record-count') out.maxRecordCount = value();
    else if (arg === '--id-field') out.idField = value();
    else if (arg === '--no-cap') out.cap = false;
    else fail(`unknown argument ${arg}`);
  }
  return out;
}

function fail(message) {
  process.stderr.write(`koop server: ${message}\n`);
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
if (!args.dataDir) {
  fail('no data directory: pass --data-dir DIR or set KOOP_DATA_DIR');
}
const dataDir = path.resolve(args.dataDir);
if (!fs.existsSync(dataDir) || !fs.statSync(dataDir).isDirectory()) {
  fail(`data directory ${dataDir} does not exist`);
}
const maxRecordCount = Number.parseInt(args.maxRecordCount || '1000', 10);
if (!Number.isInteger(maxRecordCount) || maxRecordCount < 1) {
  fail(`invalid max record count ${args.maxRecordCount}`);
}

// Koop reads ./config through the `config` package; there is none and that is fine.
process.env.SUPPRESS_NO_CONFIG_WARNING = '1';
// Generated OBJECTIDs (for files without an OBJECTID property) use Koop's JavaScript hash, so
// they do not depend on whether the optional native farmhash module happened to build.
process.env.OBJECTID_FEATURE_HASH = 'javascript';

const Koop = require('@koopjs/koop-core');
const provider = require('@koopjs/provider-file-geojson');

const koop = new Koop({
  logLevel: 'error',
  disableCompression: true,
  geoservicesDefaults: { maxRecordCount },
});

function isTrue(value) {
  return value === true || value === 'true';
}

koop.register(provider, {
  // The provider joins dataDir onto the working directory, so it must be relative.
  dataDir: path.relative(process.cwd(), dataDir) || '.',
  before: async (req) => {
    if (!args.cap) return;
    const params = { ...(req.body || {}), ...req.query };
    if (isTrue(params.returnIdsOnly) || isTrue(params.returnCountOnly)) return;
    const requested = Number.parseInt(params.resultRecordCount, 10);
    if (!Number.isInteger(requested) || requested <= 0 || requested > maxRecordCount) {
      req.query.resultRecordCount = String(maxRecordCount);
    }
  },
  after: async (req, geojson) => {
    geojson.metadata = geojson.metadata || {};
    if (geojson.metadata.maxRecordCount === undefined) {
      geojson.metadata.maxRecordCount = maxRecordCount;
    }
    if (args.idField && geojson.metadata.idField === undefined) {
      geojson.metadata.idField = args.idField;
    }
    return geojson;
  },
});

const server = koop.server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`KOOP_LISTENING ${server.address().port}\n`);
});
server.on('error', (err) => fail(err.message));

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
