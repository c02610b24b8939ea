// Installing the packed tarball the way a user's `npm install cell-runtime` would, without a network:
// the project's lockfile is cut from this repository's (same versions, same integrity hashes), so
// `npm ci --offline` takes every dependency from the npm cache the repository's own install filled.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface LockEntry {
  version: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  dev?: boolean;
  devOptional?: boolean;
  peer?: boolean;
  [key: string]: unknown;
}

export interface PackageManifest {
  name: string;
  version: string;
  license: string;
  dependencies: Record<string, string>;
  bin: Record<string, string>;
  engines: Record<string, string>;
}

export function tarballManifest(tarball: string): PackageManifest {
  return JSON.parse(execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' }));
}

/**
 * Writes `project`/package.json and package-lock.json: the tarball as the dependency, `devDependencies`
 * (names → ranges) beside it. Returns the lockfile paths that came in through the tarball.
 */
export function writeOfflineProject(
  repo: string,
  tarball: string,
  project: string,
  devDependencies: Record<string, string>,
): { throughPackage: string[] } {
  const lock = JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  const pkgs = lock.packages;
  const manifest = tarballManifest(tarball);
  // Node's lookup: the nearest node_modules/<name> from the requiring package upwards.
  const resolveDep = (from: string, name: string): string | undefined => {
    let base = from;
    for (;;) {
      const key = `${base === '' ? '' : `${base}/`}node_modules/${name}`;
      if (pkgs[key] !== undefined) return key;
      if (base === '') return undefined;
      const i = base.lastIndexOf('/node_modules/');
      base = i < 0 ? '' : base.slice(0, i);
    }
  };
  const out: Record<string, LockEntry> = {};
  const walk = (from: string, deps: Record<string, string> | undefined, optional: boolean, seen: string[]) => {
    for (const name of Object.keys(deps ?? {})) {
      const key = resolveDep(from, name);
      if (key === undefined) {
        if (optional) continue;
        throw new Error(`the repository's lockfile has no ${name} for ${from || 'the project'}`);
      }
      if (out[key] !== undefined) continue;
      const { dev: _d, devOptional: _o, peer: _p, ...entry } = pkgs[key] as LockEntry;
      out[key] = entry;
      seen.push(key);
      walk(key, entry.dependencies, false, seen);
      walk(key, entry.optionalDependencies, true, seen);
    }
  };
  const throughPackage: string[] = [];
  walk('', manifest.dependencies, false, throughPackage);
  const devKeys: string[] = [];
  walk('', devDependencies, false, devKeys);
  for (const k of devKeys) if (!throughPackage.includes(k)) (out[k] as LockEntry).dev = true;

  const spec = `file:${tarball}`;
  const pkgJson = {
    name: 'new-user-app',
    private: true,
    type: 'module',
    dependencies: { [manifest.name]: spec },
    devDependencies,
  };
  writeFileSync(join(project, 'package.json'), `${JSON.stringify(pkgJson, null, 2)}\n`);
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  const projectLock = {
    name: pkgJson.name,
    lockfileVersion: 3,
    requires: true,
    packages: {
      '': { name: pkgJson.name, dependencies: pkgJson.dependencies, devDependencies },
      [`node_modules/${manifest.name}`]: {
        version: manifest.version,
        resolved: spec,
        integrity,
        hasInstallScript: true,
        license: manifest.license,
        dependencies: manifest.dependencies,
        bin: manifest.bin,
        engines: manifest.engines,
      },
      ...out,
    },
  };
  writeFileSync(join(project, 'package-lock.json'), `${JSON.stringify(projectLock, null, 2)}\n`);
  return { throughPackage };
}
