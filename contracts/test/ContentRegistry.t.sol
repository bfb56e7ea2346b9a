// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Base} from "./Base.sol";
import {ContentRegistry} from "../src/ContentRegistry.sol";

contract ContentRegistryTest is Base {
    ContentRegistry registry;
    address constant CREATOR = address(0xC0FFEE);
    address constant TOKEN = address(0x7070);
    bytes32 constant ID = keccak256("manifest");

    event ContentRegistered(bytes32 indexed manifestId, address indexed creator, ContentRegistry.Policy policy, string uri);
    event PolicyChanged(bytes32 indexed manifestId, address indexed creator, ContentRegistry.Policy policy);
    event UriChanged(bytes32 indexed manifestId, address indexed creator, string uri);
    event ContentRetired(bytes32 indexed manifestId, address indexed creator);

    function setUp() public {
        registry = new ContentRegistry();
    }

    function gated721() internal pure returns (ContentRegistry.Policy memory) {
        return ContentRegistry.Policy(ContentRegistry.Standard.ERC721, TOKEN, 0, false, 1);
    }

    function registered() internal {
        vm.prank(CREATOR);
        registry.register(ID, gated721(), "ipfs://x");
    }

    function testRegisterRecordsPolicyAndEmits() public {
        vm.expectEmit(true, true, false, true);
        emit ContentRegistered(ID, CREATOR, gated721(), "ipfs://x");
        registered();
        ContentRegistry.Entry memory entry = registry.get(ID, CREATOR);
        assertTrue(entry.registered, "registered");
        assertEq(entry.policy.token, TOKEN, "token");
        assertEq(entry.policy.minBalance, 1, "min balance");
        assertEq(entry.uri, "ipfs://x", "uri");
        assertTrue(!registry.get(ID, address(0xBEEF)).registered, "nobody else's entry");
    }

    function testEntriesArePerCreatorSoNobodyCanFrontRun() public {
        // A stranger registering the same id first neither blocks nor changes the creator's entry.
        address stranger = address(0xBEEF);
        ContentRegistry.Policy memory open = ContentRegistry.Policy(ContentRegistry.Standard.None, address(0), 0, false, 0);
        vm.prank(stranger);
        registry.register(ID, open, "stranger");
        registered();
        assertEq(registry.get(ID, CREATOR).policy.token, TOKEN, "creator's own policy");
        assertEq(registry.get(ID, stranger).uri, "stranger", "stranger's own entry");
        vm.prank(CREATOR);
        vm.expectRevert(abi.encodeWithSelector(ContentRegistry.AlreadyRegistered.selector, ID, CREATOR));
        registry.register(ID, gated721(), "twice");
    }

    function testCreatorChangesEverythingWithEventsThenRetires() public {
        registered();
        ContentRegistry.Policy memory tier = ContentRegistry.Policy(ContentRegistry.Standard.ERC1155, TOKEN, 7, false, 2);
        vm.expectEmit(true, true, false, true);
        emit PolicyChanged(ID, CREATOR, tier);
        vm.prank(CREATOR);
        registry.setPolicy(ID, tier);
        assertEq(registry.get(ID, CREATOR).policy.tokenId, 7, "token id");
        vm.expectEmit(true, true, false, true);
        emit UriChanged(ID, CREATOR, "ipfs://y");
        vm.prank(CREATOR);
        registry.setUri(ID, "ipfs://y");
        vm.expectEmit(true, true, false, false);
        emit ContentRetired(ID, CREATOR);
        vm.prank(CREATOR);
        registry.retire(ID);
        assertTrue(registry.get(ID, CREATOR).retired, "retired");
        vm.prank(CREATOR);
        vm.expectRevert(abi.encodeWithSelector(ContentRegistry.AlreadyRetired.selector, ID, CREATOR));
        registry.setUri(ID, "again");
    }

    function testInvalidPoliciesAreRefused() public {
        ContentRegistry.Policy memory noToken = ContentRegistry.Policy(ContentRegistry.Standard.ERC721, address(0), 0, false, 1);
        vm.expectRevert(abi.encodeWithSelector(ContentRegistry.InvalidPolicy.selector));
        registry.register(ID, noToken, "");
        ContentRegistry.Policy memory zeroBalance = ContentRegistry.Policy(ContentRegistry.Standard.ERC1155, TOKEN, 1, false, 0);
        vm.expectRevert(abi.encodeWithSelector(ContentRegistry.InvalidPolicy.selector));
        registry.register(ID, zeroBalance, "");
        ContentRegistry.Policy memory publicWithToken = ContentRegistry.Policy(ContentRegistry.Standard.None, TOKEN, 0, false, 0);
        vm.expectRevert(abi.encodeWithSelector(ContentRegistry.InvalidPolicy.selector));
        registry.register(ID, publicWithToken, "");
    }

    /// Fuzz: nobody but the creator can change or retire the creator's entry.
    function testFuzzOnlyCreatorMayChange(address stranger, bytes32 id, string calldata uri) public {
        vm.assume(stranger != CREATOR);
        vm.prank(CREATOR);
        registry.register(id, gated721(), "original");
        bytes memory notTheirs = abi.encodeWithSelector(ContentRegistry.NotRegistered.selector, id, stranger);
        vm.prank(stranger);
        vm.expectRevert(notTheirs);
        registry.setUri(id, uri);
        vm.prank(stranger);
        vm.expectRevert(notTheirs);
        registry.setPolicy(id, gated721());
        vm.prank(stranger);
        vm.expectRevert(notTheirs);
        registry.retire(id);
        ContentRegistry.Entry memory entry = registry.get(id, CREATOR);
        assertEq(entry.uri, "original", "uri unchanged");
        assertEq(entry.policy.token, TOKEN, "policy unchanged");
        assertTrue(!entry.retired, "not retired");
    }

    /// Fuzz: whatever a stranger registers under an id never alters the creator's entry.
    function testFuzzStrangersCannotAlterTheCreatorsEntry(address stranger, bytes32 id, uint256 tokenId) public {
        vm.assume(stranger != CREATOR);
        vm.prank(CREATOR);
        registry.register(id, gated721(), "original");
        ContentRegistry.Policy memory theirs = ContentRegistry.Policy(ContentRegistry.Standard.ERC1155, address(0xDEAD), tokenId, false, 1);
        vm.prank(stranger);
        registry.register(id, theirs, "theirs");
        vm.prank(stranger);
        registry.retire(id);
        ContentRegistry.Entry memory entry = registry.get(id, CREATOR);
        assertEq(entry.policy.token, TOKEN, "creator policy kept");
        assertTrue(!entry.retired, "creator entry live");
    }
}
