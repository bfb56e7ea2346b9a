// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Base} from "./Base.sol";
import {StreamPass} from "../src/StreamPass.sol";
import {StreamPass1155} from "../src/StreamPass1155.sol";
import {OwnedWallet} from "../src/OwnedWallet.sol";

contract PassesTest is Base {
    address constant OWNER = address(0x0A11CE);
    address constant VIEWER = address(0xB0B);

    function testOnlyOwnerMints721AndBalancesFollowTransfers() public {
        StreamPass pass = new StreamPass(OWNER);
        vm.prank(OWNER);
        uint256 id = pass.mint(VIEWER);
        assertEq(pass.ownerOf(id), VIEWER, "owner");
        assertEq(pass.balanceOf(VIEWER), 1, "balance");
        vm.prank(VIEWER);
        pass.transferFrom(VIEWER, address(0xCAFE), id);
        assertEq(pass.balanceOf(VIEWER), 0, "balance after transfer");
        vm.prank(VIEWER);
        vm.expectRevert();
        pass.mint(VIEWER);
    }

    function testFuzzOnlyOwnerMints1155(address stranger, uint256 id, uint96 amount) public {
        vm.assume(stranger != OWNER && stranger != address(0) && stranger.code.length == 0);
        StreamPass1155 pass = new StreamPass1155(OWNER);
        vm.prank(stranger);
        vm.expectRevert();
        pass.mint(stranger, id, amount);
        vm.prank(OWNER);
        pass.mint(stranger, id, amount);
        assertEq(pass.balanceOf(stranger, id), amount, "balance");
    }

    function testWalletAcceptsOnlyItsOwnersSignatures() public {
        uint256 ownerKey = 0xA11CE;
        uint256 otherKey = 0xB0B;
        OwnedWallet wallet = new OwnedWallet(vm.addr(ownerKey));
        bytes32 hash = keccak256("sign in");
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ownerKey, hash);
        assertTrue(wallet.isValidSignature(hash, abi.encodePacked(r, s, v)) == bytes4(0x1626ba7e), "owner signature");
        (v, r, s) = vm.sign(otherKey, hash);
        assertTrue(wallet.isValidSignature(hash, abi.encodePacked(r, s, v)) == bytes4(0xffffffff), "stranger signature");
        assertTrue(wallet.isValidSignature(hash, hex"1234") == bytes4(0xffffffff), "garbage");
        StreamPass pass = new StreamPass(OWNER);
        vm.prank(OWNER);
        pass.mint(address(wallet));
        assertEq(pass.balanceOf(address(wallet)), 1, "wallet holds a pass");
    }
}
