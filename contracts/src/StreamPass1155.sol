// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title StreamPass1155
/// @notice An ERC-1155 pass collection for the testnet and demos (one token id per tier).
contract StreamPass1155 is ERC1155, Ownable {
    constructor(address owner_) ERC1155("") Ownable(owner_) {}

    function mint(address to, uint256 id, uint256 amount) external onlyOwner {
        _mint(to, id, amount, "");
    }
}
