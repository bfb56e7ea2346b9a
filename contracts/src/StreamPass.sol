// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title StreamPass
/// @notice An ERC-721 pass for the testnet and demos: its owner mints passes that gate videos.
contract StreamPass is ERC721, Ownable {
    uint256 public nextTokenId = 1;

    constructor(address owner_) ERC721("StreamPass", "PASS") Ownable(owner_) {}

    /// @notice Mints the next pass to `to` and returns its id.
    function mint(address to) external onlyOwner returns (uint256 tokenId) {
        tokenId = nextTokenId++;
        _safeMint(to, tokenId);
    }
}
