#!/usr/bin/env node
// Copies the ABI and bytecode of each deployable contract from forge's output folder into
// the committed artifacts folder, dropping metadata that is not needed for bindings.
'use strict';
const fs = require('fs');
const path = require('path');
const [outDir, artifactsDir] = process.argv.slice(2);
const CONTRACTS = ['ContentRegistry', 'StreamPass', 'StreamPass1155', 'OwnedWallet'];
fs.mkdirSync(artifactsDir, { recursive: true });
for (const name of CONTRACTS) {
  const built = JSON.parse(fs.readFileSync(path.join(outDir, `${name}.sol`, `${name}.json`), 'utf8'));
  const artifact = {
    contractName: name,
    abi: built.abi,
    bytecode: { object: built.bytecode.object },
    deployedBytecode: { object: built.deployedBytecode.object },
  };
  fs.writeFileSync(path.join(artifactsDir, `${name}.json`), JSON.stringify(artifact, null, 2) + '\n');
  console.log(`wrote ${name}.json`);
}
